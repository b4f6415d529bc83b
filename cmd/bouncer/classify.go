package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bouncer-mail/bouncer/enrich"
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
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if *reasons {
		return printReasons(env.stdout)
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
