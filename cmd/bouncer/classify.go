package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("classify", "classify bounce texts: one on the command line, or JSON lines on stdin", runClassify)
}

func runClassify(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "classify")
	rulesFile := fs.String("rules", env.getenv("BOUNCER_RULES"), "operator rules `file`, tried before the built-in rules (env BOUNCER_RULES)")
	status := fs.String("status", "", "enhanced status code of the bounce, e.g. 5.1.1 (one-bounce form)")
	typ := fs.String("type", "", "SendGrid bounce type: bounce or blocked (one-bounce form)")
	email := fs.String("email", "", "recipient address; its domain selects provider rules (one-bounce form)")
	event := fs.String("event", "bounce", "bounce or deferred; a deferral is always soft (one-bounce form)")
	reasons := fs.Bool("reasons", false, "list the reason codes with their classification and exit")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	unmatched := fs.Bool("unmatched", false, "report the stored reply texts no text rule matched (needs ClickHouse)")
	since := fs.String("since", "", "--unmatched: from this time, YYYY-MM-DD or RFC 3339 (UTC); default 7 days ago")
	until := fs.String("until", "", "--unmatched: until this time, exclusive, YYYY-MM-DD or RFC 3339; default now")
	acct := fs.String("account", "", "--unmatched: only this account (default every account)")
	limit := fs.Int("limit", 50, "--unmatched: how many texts to show, most frequent first")
	asJSON := fs.Bool("json", false, "--unmatched: print JSON instead of a table")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if *reasons {
		return printReasons(env.stdout)
	}
	if *unmatched {
		if err := e.err(); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("classify --unmatched takes no text argument; got %q", fs.Args())
		}
		w, err := parseWindow(*since, *until, time.Now())
		if err != nil {
			return err
		}
		if *acct != "" && !schemas.ValidAccountID(*acct) {
			return usagef("classify: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", *acct)
		}
		if *limit < 1 {
			return usagef("classify: --limit %d: want 1 or more", *limit)
		}
		store, err := clickhouse.Open(ctx, cf.config())
		if err != nil {
			return err
		}
		defer store.Close()
		rep, err := store.UnmatchedTexts(ctx, enrich.UnmatchedQuery{Account: *acct, Since: w.since, Until: w.until, Limit: *limit})
		if err != nil {
			return err
		}
		if *asJSON {
			out, _ := json.MarshalIndent(rep, "", "  ")
			_, err = fmt.Fprintf(env.stdout, "%s\n", out)
			return err
		}
		return printUnmatched(env.stdout, rep, w)
	}
	classifier, err := loadClassifier(*rulesFile)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("classify takes one text argument (quote it); got %d", fs.NArg())
	}
	if fs.NArg() == 1 {
		in := enrich.Input{Event: *event, Type: *typ, Reason: fs.Arg(0), Status: *status, Email: *email}
		if in.Type != "" && in.Type != "bounce" && in.Type != "blocked" {
			return usagef("--type %q: want bounce or blocked", in.Type)
		}
		if in.Status != "" {
			if _, ok := enrich.ParseStatus(in.Status); !ok {
				return usagef("--status %q: want an enhanced status code like 5.1.1", in.Status)
			}
		}
		res, err := classifier.Classify(in)
		if err != nil {
			return usagef("%v", err)
		}
		out, _ := json.Marshal(res)
		_, err = fmt.Fprintf(env.stdout, "%s\n", out)
		return err
	}
	return classifyStream(ctx, classifier, env.stdin, env.stdout)
}

func loadClassifier(rulesFile string) (*enrich.Classifier, error) {
	var operator []enrich.Rule
	if rulesFile != "" {
		rules, err := enrich.ParseRulesFile(rulesFile)
		if err != nil {
			return nil, err
		}
		operator = rules
	}
	return enrich.New(operator...)
}

// classifyStream answers each JSON line of in with one JSON line on out.
func classifyStream(ctx context.Context, c *enrich.Classifier, in io.Reader, out io.Writer) error {
	r := bufio.NewReaderSize(in, 64<<10)
	w := bufio.NewWriterSize(out, 64<<10)
	lineNo := 0
	for {
		if ctx.Err() != nil {
			w.Flush()
			return ctx.Err()
		}
		line, readErr := r.ReadBytes('\n')
		if len(line) > 0 {
			lineNo++
			if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
				if _, err := w.Write(classifyLine(c, trimmed, lineNo)); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
				if err := w.WriteByte('\n'); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
			}
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			w.Flush()
			return fmt.Errorf("read input line %d: %w", lineNo+1, readErr)
		}
		// Flush when the input has nothing more buffered, so an
		// interactive or piped producer sees each answer promptly.
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func classifyLine(c *enrich.Classifier, line []byte, lineNo int) []byte {
	fail := func(format string, args ...any) []byte {
		out, _ := json.Marshal(map[string]string{"error": fmt.Sprintf("line %d: ", lineNo) + fmt.Sprintf(format, args...)})
		return out
	}
	if line[0] != '{' {
		return fail("want a JSON object, got %s", describeJSONStart(line))
	}
	var in enrich.Input
	if err := json.Unmarshal(line, &in); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fail("field %q: want a string, got %s", typeErr.Field, typeErr.Value)
		}
		return fail("invalid JSON: %v", err)
	}
	res, err := c.Classify(in)
	if err != nil {
		return fail("%v", err)
	}
	out, _ := json.Marshal(res)
	return out
}

func describeJSONStart(b []byte) string {
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	}
	if bytes.Equal(b, []byte("null")) {
		return "null"
	}
	if len(b) > 20 {
		b = b[:20]
	}
	return fmt.Sprintf("%q", b)
}

func printReasons(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tCLASSIFICATION\tMAY BE HARD\tMEANING")
	for _, r := range enrich.Taxonomy {
		hard := "no"
		if r.MayBeHard {
			hard = "yes (not 4xx)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Reason, r.Class, hard, r.Doc)
	}
	return tw.Flush()
}

// window is a time range [since, until).
type window struct{ since, until time.Time }

// parseWindow reads --since and --until (YYYY-MM-DD or RFC 3339, UTC);
// since defaults to 7 days before now, until to now.
func parseWindow(since, until string, now time.Time) (window, error) {
	w := window{since: now.UTC().AddDate(0, 0, -7), until: now.UTC()}
	for _, f := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", since, &w.since}, {"until", until, &w.until}} {
		if f.v == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, f.v)
		if err != nil {
			if t, err = time.Parse(time.RFC3339, f.v); err != nil {
				return w, usagef("--%s %q: want YYYY-MM-DD or an RFC 3339 time like 2026-11-20T08:00:00Z", f.name, f.v)
			}
		}
		*f.dst = t.UTC()
	}
	if !w.until.After(w.since) {
		return w, usagef("--until %s is not after --since %s", w.until.Format(time.RFC3339), w.since.Format(time.RFC3339))
	}
	return w, nil
}

// printUnmatched prints the report of what no rule knows as a table: the
// most frequent masked texts first, then a newest example of each.
func printUnmatched(out io.Writer, rep enrich.UnmatchedReport, w window) error {
	fmt.Fprintf(out, "%s to %s: %d bounces and deferrals, %d matched no text rule", w.since.Format(time.RFC3339), w.until.Format(time.RFC3339), rep.Total, rep.Unmatched)
	if rep.Unknown > 0 {
		fmt.Fprintf(out, ", %d stored before bouncer recorded what decided (not in the report)", rep.Unknown)
	}
	fmt.Fprintln(out)
	if len(rep.Groups) == 0 {
		_, err := fmt.Fprintln(out, "no unmatched texts")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tUNCLASSIFIED\tREPLY\tSTATUS\tPROVIDERS\tCODE RULES\tTEXT (masked)")
	for _, g := range rep.Groups {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", g.Count, g.Unclassified, dash(g.ReplyCode), dash(g.Status),
			dash(strings.Join(g.Providers, ",")), dash(strings.Join(g.Rules, ",")), clip(g.Text, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nnewest example of each:")
	for i, g := range rep.Groups {
		fmt.Fprintf(out, "%3d. %s\n", i+1, clip(g.Example, 200))
	}
	_, err := fmt.Fprintln(out, "\nTurn a text into a rule in a rules file (docs/classification.md, \"Your own rules\"), check it with\nbouncer classify --rules FILE \"TEXT\", then apply it to what is stored with bouncer reclassify --rules FILE.")
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
