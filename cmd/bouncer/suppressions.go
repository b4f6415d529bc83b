package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("suppressions", "import or export a suppression list in SendGrid's CSV export format", runSuppressions)
}

const suppressionsUsage = `
Usage:
  bouncer suppressions export --list LIST --account ACCOUNT [--output FILE]
  bouncer suppressions import --list LIST --account ACCOUNT [--skip-bad] FILE|-

Moves a suppression list in or out in the CSV format of SendGrid's
"Export CSV" (Suppressions > LIST > gear icon > Export CSV), so a SendGrid
user can bring an existing list in. LIST is bounces, blocks,
invalid_emails, spam_reports or unsubscribes (global_unsubscribes is the
same list; --group N selects a group's unsubscribes). The columns are:

  bounces, blocks   email,created,status,reason
  invalid_emails    email,created,reason
  spam_reports      email,created,ip       (ip is read but not stored)
  unsubscribes      email,created

export writes the list's current entries (newest state per address, removed
ones left out) in address order, paging through ClickHouse, to --output or
stdout. created is "YYYY-MM-DD HH:MM:SS" in UTC, or unix seconds with
--time-format unix.

import reads such a file (FILE, or - for stdin): the header names the
columns in any order, unknown columns are ignored. created may be unix
seconds (or milliseconds), "YYYY-MM-DD HH:MM:SS", "YYYY-MM-DDTHH:MM:SS",
RFC 3339, "YYYY-MM-DD", "MM/DD/YYYY HH:MM[:SS]" or "MM/DD/YYYY"; times
without a zone are read in --timezone; an empty created means now. A row
whose email is not an address (or whose created cannot be read) is
reported with its line number on stderr and skipped; the command then exits
1 after importing the good rows, unless --skip-bad. Rows are written in
batches of --batch-size (source "import") and each batch is published to
the change log the workers follow (--publish-changes, as bouncer api does).
An entry's order is its created time, so importing the same file again
changes nothing, and an address removed after its created time stays
removed. Bounces and blocks are classified from their reason.

Examples:

  # bring SendGrid's bounces and global unsubscribes into account acme
  bouncer suppressions import --list bounces --account acme bounces.csv
  bouncer suppressions import --list unsubscribes --account acme --skip-bad unsubscribes.csv
  gunzip -c spam_reports.csv.gz | bouncer suppressions import --list spam_reports --account acme -

  # export them again
  bouncer suppressions export --list bounces --account acme --output bounces.csv
  bouncer suppressions export --list invalid_emails --account acme --time-format unix > invalid.csv

Exit status: 0 done, 1 failed or bad rows (without --skip-bad), 2 wrong usage.
`

// sendgridColumns are the columns of SendGrid's CSV export of each list, in
// SendGrid's order. Sources: SparkPost's guide to importing SendGrid exports
// (github.com/SparkPost/sparkpost-cli, sendgrid-suppressions.md: "email"
// first, "created" second; bounces also carry "status" and "reason",
// invalid emails "reason", spam reports "ip", unsubscribes nothing else; its
// importer skips the header row by record[0] == "email"), and Twilio
// SendGrid's UI docs (www.twilio.com/docs/sendgrid/ui/sending-email/bounces
// and .../blocks: Suppressions > list > gear icon > Export CSV). The blocks
// columns are not documented there; they follow the v3 API's block object
// (created, email, reason, status) in the bounces' order. created as
// "YYYY-MM-DD HH:MM:SS" is SendGrid's documented date string (v2 API,
// "MySQL timestamp format").
var sendgridColumns = map[string][]string{
	pipeline.ListBounces:       {"email", "created", "status", "reason"},
	pipeline.ListBlocks:        {"email", "created", "status", "reason"},
	pipeline.ListInvalidEmails: {"email", "created", "reason"},
	pipeline.ListSpamReports:   {"email", "created", "ip"},
	pipeline.ListUnsubscribes:  {"email", "created"},
}

// columnAliases maps header names (lower-cased, trimmed) to a column.
var columnAliases = map[string]string{
	"email": "email", "email address": "email", "email_address": "email", "recipient": "email",
	"created": "created", "created_at": "created", "created at": "created",
	"reason": "reason", "status": "status", "ip": "ip",
}

// sendgridTime is SendGrid's date string.
const sendgridTime = "2006-01-02 15:04:05"

// createdLayouts are the date strings import accepts, tried in order.
var createdLayouts = []string{
	sendgridTime, "2006-01-02T15:04:05", time.RFC3339Nano, "2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04", "2006-01-02", "1/2/2006 15:04:05", "1/2/2006 15:04", "1/2/2006",
}

const importSource = "import"

func runSuppressions(ctx context.Context, env *environment, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	help := sub == "-h" || sub == "--help" || sub == "-help"
	if sub != "import" && sub != "export" && !help {
		return usagef("suppressions: want import or export (see bouncer suppressions --help)")
	}
	fs := newFlagSet(env, "suppressions", suppressionsUsage)
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	kf := addKafkaFlags(e)
	list := fs.String("list", "", "the list: bounces, blocks, invalid_emails, spam_reports or unsubscribes (global_unsubscribes)")
	acct := fs.String("account", "", "the account (1 to 64 of A-Z a-z 0-9 _ . -)")
	group := fs.Int64("group", 0, "with --list unsubscribes: an unsubscribe group's list instead of the global one")
	output := fs.String("output", "", "export: write to FILE instead of stdout")
	timeFormat := fs.String("time-format", "datetime", "export: created as datetime (YYYY-MM-DD HH:MM:SS, UTC) or unix (seconds)")
	skipBad := fs.Bool("skip-bad", false, "import: exit 0 even if some rows were bad (they are skipped either way)")
	batchSize := fs.Int("batch-size", 5000, "import: rows per ClickHouse insert and change-log publish")
	tz := fs.String("timezone", "UTC", "import: zone of created times written without one (an IANA name)")
	changeTopic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "import: compacted topic the workers' suppression index follows; imported entries are published there")
	publish := fs.Bool("publish-changes", true, "import: publish imported entries to the change-log topic (needs Kafka); without it workers see them only after a restart")
	if help {
		return parseFlags(fs, env, []string{"--help"})
	}
	pos, err := parseInterspersed(fs, env, args[1:])
	if err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	name := *list
	if name == "global_unsubscribes" {
		name = pipeline.ListUnsubscribes
	}
	cols, ok := sendgridColumns[name]
	if name == "" {
		return usagef("suppressions %s: missing --list (bounces, blocks, invalid_emails, spam_reports or unsubscribes)", sub)
	}
	if !ok {
		return usagef("suppressions %s: --list %q: want bounces, blocks, invalid_emails, spam_reports or unsubscribes", sub, *list)
	}
	if *group < 0 || *group != 0 && name != pipeline.ListUnsubscribes {
		return usagef("suppressions %s: --group %d: only a positive group with --list unsubscribes", sub, *group)
	}
	if *acct == "" {
		return usagef("suppressions %s: missing --account", sub)
	}
	if !accountPattern.MatchString(*acct) {
		return usagef("suppressions %s: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", sub, *acct)
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}

	if sub == "export" {
		if len(pos) > 0 {
			return usagef("suppressions export takes no arguments; got %q (use --output FILE)", pos)
		}
		if *timeFormat != "datetime" && *timeFormat != "unix" {
			return usagef("suppressions export: --time-format %q: want datetime or unix", *timeFormat)
		}
		return exportSuppressions(ctx, env, chCfg, *acct, name, *group, cols, *output, *timeFormat == "unix")
	}

	if len(pos) != 1 {
		return usagef("suppressions import: want one FILE (or - for stdin) after the flags; got %d", len(pos))
	}
	if *batchSize < 1 {
		return usagef("suppressions import: --batch-size %d: want at least 1", *batchSize)
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return usagef("suppressions import: --timezone %q: %v", *tz, err)
	}
	var in io.Reader = env.stdin
	file := pos[0]
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usagef("suppressions import: %v", err)
		}
		defer f.Close()
		in = f
	}
	store, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	defer store.Close()
	imp := &importer{
		store: store, account: *acct, list: name, group: *group, loc: loc,
		batch: *batchSize, now: time.Now().UTC(), stderr: env.stderr,
	}
	if *publish {
		cw, err := openChangeLog(ctx, kf, *changeTopic)
		if err != nil {
			return err
		}
		defer cw.Close()
		imp.changes = cw
	}
	if name == pipeline.ListBounces || name == pipeline.ListBlocks {
		if imp.classifier, err = enrich.New(); err != nil {
			return err
		}
	}
	if err := imp.run(ctx, in); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "imported %d, skipped %d\n", imp.imported, imp.skipped)
	if imp.skipped > 0 && !*skipBad {
		return fmt.Errorf("suppressions import: %d bad rows skipped (see the lines above); the %d good rows are imported; --skip-bad to exit 0", imp.skipped, imp.imported)
	}
	return nil
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (the flag package stops at the first positional one)
// and returns the positional ones; everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, env *environment, args []string) ([]string, error) {
	var after []string
	for i, a := range args {
		if a == "--" {
			after = args[i+1:]
			args = args[:i]
			break
		}
	}
	if err := parseFlags(fs, env, args); err != nil {
		return nil, err
	}
	var pos []string
	for rest := fs.Args(); len(rest) > 0; rest = fs.Args() {
		pos = append(pos, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, &usageError{err.Error()}
		}
	}
	return append(pos, after...), nil
}

// exportSuppressions writes one list as SendGrid's CSV, a page at a time.
func exportSuppressions(ctx context.Context, env *environment, cfg clickhouse.Config, account, list string, group int64, cols []string, output string, unix bool) (err error) {
	store, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	out := env.stdout
	if output != "" && output != "-" {
		f, err := os.Create(output)
		if err != nil {
			return usagef("suppressions export: %v", err)
		}
		defer func() {
			if cerr := f.Close(); err == nil && cerr != nil {
				err = cerr
			}
			if err != nil {
				os.Remove(output) // no half-written export left behind
			}
		}()
		out = f
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	w := csv.NewWriter(bw)
	if err := w.Write(cols); err != nil {
		return err
	}
	n := 0
	rec := make([]string, len(cols))
	err = store.EachSuppression(ctx, account, list, group, 0, func(s clickhouse.Suppression) error {
		for i, c := range cols {
			switch c {
			case "email":
				rec[i] = s.Email
				if rec[i] == "" {
					rec[i] = s.EmailNorm
				}
			case "created":
				if unix {
					rec[i] = strconv.FormatInt(s.Created.Unix(), 10)
				} else {
					rec[i] = s.Created.UTC().Format(sendgridTime)
				}
			case "status":
				rec[i] = s.Status
			case "reason":
				rec[i] = s.Reason
			default: // ip: not kept
				rec[i] = ""
			}
		}
		n++
		return w.Write(rec)
	})
	if err != nil {
		return err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "exported %d entries of %s/%s\n", n, account, listLabel(list, group))
	return nil
}

func listLabel(list string, group int64) string {
	if group != 0 {
		return fmt.Sprintf("%s (group %d)", list, group)
	}
	return list
}

// importer reads a SendGrid CSV export and writes it in batches.
type importer struct {
	store      *clickhouse.Store
	changes    pipeline.ChangePublisher
	classifier *enrich.Classifier
	account    string
	list       string
	group      int64
	loc        *time.Location
	batch      int
	now        time.Time
	stderr     io.Writer

	pending           []pipeline.SuppressionChange
	imported, skipped int
	reported          int
	lastLine          int
}

// maxReported bounds the bad-row lines printed; the count is exact.
const maxReported = 1000

func (m *importer) bad(line int, format string, args ...any) {
	m.skipped++
	if m.reported < maxReported {
		fmt.Fprintf(m.stderr, "line %d: %s\n", line, fmt.Sprintf(format, args...))
	} else if m.reported == maxReported {
		fmt.Fprintf(m.stderr, "(more bad rows: only the first %d are listed)\n", maxReported)
	}
	m.reported++
}

func (m *importer) run(ctx context.Context, in io.Reader) error {
	r := csv.NewReader(bufio.NewReaderSize(in, 64<<10))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	header, err := r.Read()
	if err == io.EOF {
		return errors.New("suppressions import: the file is empty (want a header line: email,created,...)")
	}
	if err != nil {
		return fmt.Errorf("suppressions import: header: %w", err)
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
		return fmt.Errorf("suppressions import: line 1: no email column in the header %q (want SendGrid's export: email,created,...)", strings.Join(header, ","))
	}
	field := func(rec []string, c string) string {
		if i, ok := idx[c]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				m.bad(pe.StartLine, "not CSV: %v", pe.Err)
				continue
			}
			return fmt.Errorf("suppressions import: %w", err)
		}
		line, _ := r.FieldPos(0)
		m.lastLine = line
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		raw := field(rec, "email")
		norm, ok := normalizeAddress(raw)
		if !ok {
			m.bad(line, "email %q is not an address", raw)
			continue
		}
		at, err := m.created(field(rec, "created"))
		if err != nil {
			m.bad(line, "created: %v", err)
			continue
		}
		c := pipeline.SuppressionChange{
			AccountID: m.account, List: m.list, GroupID: m.group, EmailNorm: norm, Email: trimASCIISpace(raw),
			At: at, Reason: field(rec, "reason"), Status: field(rec, "status"), Source: importSource,
		}
		if m.classifier != nil && c.Reason != "" {
			typ := "bounce"
			if m.list == pipeline.ListBlocks {
				typ = "blocked"
			}
			if res, err := m.classifier.Classify(enrich.Input{Event: "bounce", Type: typ, Reason: c.Reason, Status: c.Status, Email: norm}); err == nil {
				c.Classification, c.ReasonCode = string(res.Classification), string(res.Reason)
			}
		}
		m.pending = append(m.pending, c)
		if len(m.pending) >= m.batch {
			if err := m.flush(ctx); err != nil {
				return err
			}
		}
	}
	return m.flush(ctx)
}

// flush writes the pending rows to ClickHouse, then announces them on the
// change log. A failure after the write is safe to retry by importing the
// file again: the same rows get the same versions.
func (m *importer) flush(ctx context.Context) error {
	if len(m.pending) == 0 {
		return nil
	}
	if err := m.store.WriteSuppressions(ctx, m.pending); err != nil {
		return fmt.Errorf("suppressions import: after line %d: %w (rows up to the previous batch are imported; importing the file again is safe)", m.lastLine, err)
	}
	if m.changes != nil {
		if err := m.changes.PublishChanges(ctx, m.pending); err != nil {
			return fmt.Errorf("suppressions import: after line %d: stored but not announced: %w (importing the file again is safe)", m.lastLine, err)
		}
	}
	m.imported += len(m.pending)
	m.pending = m.pending[:0]
	fmt.Fprintf(m.stderr, "suppressions import: %d imported, %d skipped (line %d)\n", m.imported, m.skipped, m.lastLine)
	return nil
}

// created reads SendGrid's created column: empty means now.
func (m *importer) created(v string) (time.Time, error) {
	if v == "" {
		return m.now, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > 1e11 { // milliseconds
			n /= 1000
		}
		return checkCreated(time.Unix(n, 0).UTC(), v)
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e11 {
		return checkCreated(time.Unix(int64(f), 0).UTC(), v)
	}
	for _, layout := range createdLayouts {
		if t, err := time.ParseInLocation(layout, v, m.loc); err == nil {
			return checkCreated(t.UTC().Truncate(time.Second), v)
		}
	}
	return time.Time{}, fmt.Errorf("%q: want unix seconds or a date like 2025-11-27 00:00:00", v)
}

// checkCreated keeps created within ClickHouse's DateTime.
func checkCreated(t time.Time, v string) (time.Time, error) {
	if t.Unix() <= 0 || t.Unix() > int64(^uint32(0)) {
		return time.Time{}, fmt.Errorf("%q: out of range (1970 to 2106)", v)
	}
	return t, nil
}

func trimASCIISpace(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r == ' ' || 0x09 <= r && r <= 0x0d })
}

// normalizeAddress trims and lower-cases an address the way the event
// decoder does (schemas: email_norm) and checks that it looks like one:
// local@domain, both parts non-empty (split at the last @), no space or
// control character.
func normalizeAddress(raw string) (string, bool) {
	v := trimASCIISpace(raw)
	at := strings.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 || !utf8.ValidString(v) {
		return "", false
	}
	for _, r := range v {
		if r <= 0x20 || 0x7f <= r && r <= 0x9f {
			return "", false
		}
	}
	return strings.ToLower(v), true
}
