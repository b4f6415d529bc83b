package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

func init() {
	register("suppressions", "import or export a suppression list in SendGrid's CSV export format", runSuppressions)
}

// sendgridTime is SendGrid's date string (the export's created column).
const sendgridTime = csvlist.TimeLayout

func runSuppressions(ctx context.Context, env *environment, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	help := sub == "-h" || sub == "--help" || sub == "-help"
	if sub != "import" && sub != "export" && !help {
		return usagef("suppressions: want import or export (see bouncer suppressions --help)")
	}
	fs := newFlagSet(env, "suppressions")
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
		name = suppression.ListUnsubscribes
	}
	cols, ok := csvlist.Columns[name]
	if name == "" {
		return usagef("suppressions %s: missing --list (bounces, blocks, invalid_emails, spam_reports or unsubscribes)", sub)
	}
	if !ok {
		return usagef("suppressions %s: --list %q: want bounces, blocks, invalid_emails, spam_reports or unsubscribes", sub, *list)
	}
	if *group < 0 || *group != 0 && name != suppression.ListUnsubscribes {
		return usagef("suppressions %s: --group %d: only a positive group with --list unsubscribes", sub, *group)
	}
	if *acct == "" {
		return usagef("suppressions %s: missing --account", sub)
	}
	if !schemas.ValidAccountID(*acct) {
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
	changes, closeChanges, err := openChangeLog(ctx, kf, *changeTopic, *publish)
	if err != nil {
		return err
	}
	defer closeChanges()
	svc := suppression.NewService(store, changes, enrich.MustNew())
	reported := 0
	imported, skipped, err := svc.ImportCSV(ctx, in, *acct, name, *group, suppression.ImportOptions{
		Location: loc, Now: time.Now().UTC(), Batch: *batchSize,
		Bad: func(line int, msg string) {
			// The count is exact; the lines printed are bounded.
			if reported < maxReported {
				fmt.Fprintf(env.stderr, "line %d: %s\n", line, msg)
			} else if reported == maxReported {
				fmt.Fprintf(env.stderr, "(more bad rows: only the first %d are listed)\n", maxReported)
			}
			reported++
		},
		Progress: func(imported, skipped, line int) {
			fmt.Fprintf(env.stderr, "suppressions import: %d imported, %d skipped (line %d)\n", imported, skipped, line)
		},
	})
	if err != nil {
		return fmt.Errorf("suppressions import: %w", err)
	}
	fmt.Fprintf(env.stdout, "imported %d, skipped %d\n", imported, skipped)
	if skipped > 0 && !*skipBad {
		return fmt.Errorf("suppressions import: %d bad rows skipped (see the lines above); the %d good rows are imported; --skip-bad to exit 0", skipped, imported)
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
	w, err := csvlist.NewWriter(out, list, unix)
	if err != nil {
		return err
	}
	err = suppression.NewService(store, nil, nil).ExportList(ctx, account, list, group, w.Write)
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	n := w.N
	fmt.Fprintf(env.stderr, "exported %d entries of %s/%s\n", n, account, listLabel(list, group))
	return nil
}

func listLabel(list string, group int64) string {
	if group != 0 {
		return fmt.Sprintf("%s (group %d)", list, group)
	}
	return list
}

// maxReported bounds the bad-row lines printed; the count is exact.
const maxReported = 1000
