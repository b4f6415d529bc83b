// Package csvlist reads and writes suppression lists in the CSV format of
// SendGrid's "Export CSV" (Suppressions > list > gear icon > Export CSV), for
// `bouncer suppressions import|export` and the API's import and export
// endpoints alike. Its CSV type is the one CSV writer of every bouncer
// export (lists today, other downloads later), so every file a user opens in
// a spreadsheet is protected the same way.
//
// # Formula injection
//
// Cells come from outsiders (a bounce reason is a remote mail server's
// text; an address such as =cmd|'/Ccalc'!A0@evil.example passes address
// checks), and a spreadsheet runs a cell that starts with =, +, - or @ as a
// formula. So on export a cell that starts with one of the characters
// = + - @ tab or carriage return gets a leading apostrophe (Escape), which
// spreadsheets show as text. On import, one leading apostrophe is removed
// when the next character is one of those (Unescape), so an exported file
// imports back to the same values; no other character is removed from the
// start of a reason or status (only spaces are trimmed there), so a
// protective leading tab survives. A stored value that itself starts with
// an apostrophe and one of those characters loses that apostrophe on its
// first export and import, and is stable after.
//
// # Format
//
// One header line naming the columns, then one entry per line:
//
//	bounces, blocks   email,created,status,reason
//	invalid_emails    email,created,reason
//	spam_reports      email,created,ip       (ip is read but not kept)
//	unsubscribes      email,created
//
// The Reader takes the header's columns in any order (a few aliases such as
// "email address" and "created_at" too), ignores unknown ones, and accepts
// several date forms for created (see ParseCreated). A bad row is reported
// as a *RowError naming its line and the Reader goes on with the next one;
// only an unreadable header or a failing input is fatal.
package csvlist

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/schemas"
)

// Columns are the columns of SendGrid's CSV export of each list, in
// SendGrid's order. Sources: SparkPost's guide to importing SendGrid
// exports (email first, created second; bounces also carry status and
// reason, invalid emails reason, spam reports ip, unsubscribes nothing
// else) and Twilio SendGrid's UI docs. The blocks columns are not documented
// there; they follow the v3 API's block object in the bounces' order.
var Columns = map[string][]string{
	"bounces":        {"email", "created", "status", "reason"},
	"blocks":         {"email", "created", "status", "reason"},
	"invalid_emails": {"email", "created", "reason"},
	"spam_reports":   {"email", "created", "ip"},
	"unsubscribes":   {"email", "created"},
}

// columnAliases maps header names (lower-cased, trimmed) to a column.
var columnAliases = map[string]string{
	"email": "email", "email address": "email", "email_address": "email", "recipient": "email",
	"created": "created", "created_at": "created", "created at": "created",
	"reason": "reason", "status": "status", "ip": "ip",
}

// TimeLayout is SendGrid's date string ("MySQL timestamp format"), UTC.
const TimeLayout = "2006-01-02 15:04:05"

// createdLayouts are the date strings ParseCreated accepts, tried in order.
var createdLayouts = []string{
	TimeLayout, "2006-01-02T15:04:05", time.RFC3339Nano, "2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04", "2006-01-02", "1/2/2006 15:04:05", "1/2/2006 15:04", "1/2/2006",
}

// Row is one list entry of a file.
type Row struct {
	// Line is the row's line in the file (1 is the header).
	Line int
	// Email is the address as written (trimmed); EmailNorm is how bouncer
	// compares it (ASCII letters lower-cased).
	Email, EmailNorm string
	Created          time.Time
	Reason, Status   string
}

// RowError is a row the Reader skipped.
type RowError struct {
	Line int
	Msg  string
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Reader reads the rows of one file.
type Reader struct {
	r   *csv.Reader
	idx map[string]int
	loc *time.Location
	now time.Time
}

// NewReader reads the header of in. Times without a zone are read in loc
// (UTC when nil); an empty created is now.
func NewReader(in io.Reader, loc *time.Location, now time.Time) (*Reader, error) {
	if loc == nil {
		loc = time.UTC
	}
	r := csv.NewReader(bufio.NewReaderSize(in, 64<<10))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	header, err := r.Read()
	if err == io.EOF {
		return nil, errors.New("the file is empty (want a header line: email,created,...)")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	idx := map[string]int{}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff") // a spreadsheet's byte order mark
		}
		if c, ok := columnAliases[strings.ToLower(strings.TrimSpace(h))]; ok {
			if _, dup := idx[c]; !dup {
				idx[c] = i
			}
		}
	}
	if _, ok := idx["email"]; !ok {
		return nil, fmt.Errorf("line 1: no email column in the header %q (want SendGrid's export: email,created,...)", strings.Join(header, ","))
	}
	return &Reader{r: r, idx: idx, loc: loc, now: now}, nil
}

// field returns column c of rec, unescaped (Unescape) and trimmed of white
// space; text reads free-text columns, trimmed of spaces only.
func (r *Reader) field(rec []string, c string) string {
	return TrimSpace(r.text(rec, c))
}

func (r *Reader) text(rec []string, c string) string {
	if i, ok := r.idx[c]; ok && i < len(rec) {
		return strings.Trim(Unescape(rec[i]), " ")
	}
	return ""
}

// Next returns the next row: io.EOF at the end, a *RowError for a bad row
// (call Next again for the rest), any other error when the input fails.
// Blank lines are skipped.
func (r *Reader) Next() (Row, error) {
	for {
		rec, err := r.r.Read()
		if err == io.EOF {
			return Row{}, io.EOF
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return Row{}, &RowError{Line: pe.StartLine, Msg: fmt.Sprintf("not CSV: %v", pe.Err)}
			}
			return Row{}, err
		}
		line, _ := r.r.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		raw := r.field(rec, "email")
		norm, ok := NormalizeAddress(raw)
		if !ok {
			return Row{}, &RowError{Line: line, Msg: fmt.Sprintf("email %q is not an address", raw)}
		}
		at, err := ParseCreated(r.field(rec, "created"), r.loc, r.now)
		if err != nil {
			return Row{}, &RowError{Line: line, Msg: "created: " + err.Error()}
		}
		return Row{Line: line, Email: TrimSpace(raw), EmailNorm: norm, Created: at,
			Reason: r.text(rec, "reason"), Status: r.text(rec, "status")}, nil
	}
}

// ParseCreated reads a created value: unix seconds (or milliseconds),
// "YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SS", RFC 3339, "YYYY-MM-DD",
// "MM/DD/YYYY[ HH:MM[:SS]]"; zoneless times in loc; empty means now. The
// result is within ClickHouse's DateTime (1970 to 2106), whole seconds, and
// at most a day after now.
func ParseCreated(v string, loc *time.Location, now time.Time) (time.Time, error) {
	if v == "" {
		return now.UTC().Truncate(time.Second), nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > 1e11 { // milliseconds
			n /= 1000
		}
		return checkCreated(time.Unix(n, 0).UTC(), v, now)
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
		return checkCreated(time.Unix(int64(f), 0).UTC(), v, now)
	}
	for _, layout := range createdLayouts {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return checkCreated(t.UTC().Truncate(time.Second), v, now)
		}
	}
	return time.Time{}, fmt.Errorf("%q: want unix seconds or a date like 2025-11-27 00:00:00", v)
}

func checkCreated(t time.Time, v string, now time.Time) (time.Time, error) {
	if t.Unix() <= 0 || t.Unix() > int64(^uint32(0)) {
		return time.Time{}, fmt.Errorf("%q: out of range (1970 to 2106)", v)
	}
	// An entry dated in the future would outlive every delete made before
	// that date (order is by event time), so it is refused.
	if t.After(now.Add(24 * time.Hour)) {
		return time.Time{}, fmt.Errorf("%q: in the future; want the time the address was added", v)
	}
	return t, nil
}

// TrimSpace trims ASCII white space.
func TrimSpace(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r == ' ' || 0x09 <= r && r <= 0x0d })
}

// MaxAddressLen bounds an address (RFC 5321 allows 254 in practice; room
// to spare).
const MaxAddressLen = 320

// NormalizeAddress trims an address and lower-cases its ASCII letters (and
// nothing else) the way the event decoder does (email_norm,
// schemas.NormalizeAddress), and checks that it looks like one, more
// strictly than the decoder (this is for addresses written into lists): local@domain
// split at the last @, both parts non-empty, at most MaxAddressLen bytes of
// valid UTF-8, no space, control character or U+FFFD (what a decoder puts
// for bytes that were not UTF-8); no quoting characters ("\<>(),;:[]@) in
// the local part (quoted local parts are not accepted), and a domain of
// non-empty dot-separated labels without those or /, % and '.
func NormalizeAddress(raw string) (string, bool) {
	v := TrimSpace(raw)
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || len(v) > MaxAddressLen || !utf8.ValidString(v) {
		return "", false
	}
	for _, r := range v {
		if r <= 0x20 || 0x7f <= r && r <= 0x9f || r == utf8.RuneError || r == 0xfeff {
			return "", false
		}
	}
	local, domain := v[:at], v[at+1:]
	if strings.ContainsAny(local, `"\<>(),;:[]@`) || strings.ContainsAny(domain, `"\<>(),;:[]/%'`) {
		return "", false
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" {
			return "", false
		}
	}
	return schemas.LowerASCII(v), true
}

// formulaStart reports whether a cell starting with c is read as a formula
// (or, for tab and CR, can hide one) by a spreadsheet.
func formulaStart(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// Escape returns v as it is written to a CSV cell: with a leading
// apostrophe when it starts with = + - @ tab or carriage return, else as it
// is. See the package doc.
func Escape(v string) string {
	if v != "" && formulaStart(v[0]) {
		return "'" + v
	}
	return v
}

// Unescape undoes Escape: it removes one leading apostrophe when the next
// character is = + - @ tab or carriage return, and nothing else.
func Unescape(v string) string {
	if len(v) >= 2 && v[0] == '\'' && formulaStart(v[1]) {
		return v[1:]
	}
	return v
}

// CSV writes records with every cell escaped (Escape). It is buffered:
// call Flush at the end.
type CSV struct {
	bw    *bufio.Writer
	w     *csv.Writer
	cells []string
}

// NewCSV returns a CSV writing to out.
func NewCSV(out io.Writer) *CSV {
	bw := bufio.NewWriterSize(out, 64<<10)
	return &CSV{bw: bw, w: csv.NewWriter(bw)}
}

// Write writes one record, each cell escaped.
func (c *CSV) Write(record []string) error {
	c.cells = c.cells[:0]
	for _, v := range record {
		c.cells = append(c.cells, Escape(v))
	}
	return c.w.Write(c.cells)
}

// Flush writes what is buffered to the underlying writer.
func (c *CSV) Flush() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// Writer writes one list as SendGrid's CSV (through CSV, so every cell is
// escaped).
type Writer struct {
	w    *CSV
	cols []string
	rec  []string
	unix bool
	// N counts the rows written.
	N int
}

// NewWriter writes list's header to out. created is written as TimeLayout
// in UTC, or unix seconds when unix is set.
func NewWriter(out io.Writer, list string, unix bool) (*Writer, error) {
	cols, ok := Columns[list]
	if !ok {
		return nil, fmt.Errorf("csvlist: unknown list %q", list)
	}
	w := &Writer{w: NewCSV(out), cols: cols, rec: make([]string, len(cols)), unix: unix}
	return w, w.w.Write(cols)
}

// Write writes one row (ip is written empty: it is not kept).
func (w *Writer) Write(r Row) error {
	for i, c := range w.cols {
		switch c {
		case "email":
			w.rec[i] = r.Email
			if w.rec[i] == "" {
				w.rec[i] = r.EmailNorm
			}
		case "created":
			if w.unix {
				w.rec[i] = strconv.FormatInt(r.Created.Unix(), 10)
			} else {
				w.rec[i] = r.Created.UTC().Format(TimeLayout)
			}
		case "status":
			w.rec[i] = r.Status
		case "reason":
			w.rec[i] = r.Reason
		default:
			w.rec[i] = ""
		}
	}
	w.N++
	return w.w.Write(w.rec)
}

// Flush writes what is buffered to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }
