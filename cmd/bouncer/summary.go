package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/progress"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("summary", "print what ClickHouse holds: events by type, bounces by classification, suppressions, dead letters", runSummary)
}

func runSummary(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "summary")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	waitFor := fs.Uint64("wait-for", 0, "wait until events + dead letters reach this many")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up waiting after this long")
	quiet := fs.Bool("quiet", false, "no progress on stderr while waiting")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	store, err := clickhouse.Open(ctx, cf.config())
	if err != nil {
		return err
	}
	defer store.Close()
	if *waitFor > 0 {
		if err := waitForRows(ctx, store, *waitFor, *timeout, env.stderr, *quiet); err != nil {
			return err
		}
	}
	s, err := store.Summarize(ctx)
	if err != nil {
		return err
	}
	printSummary(env.stdout, s)
	return nil
}

func waitForRows(ctx context.Context, store *clickhouse.Store, want uint64, timeout time.Duration, w io.Writer, quiet bool) error {
	bar := progress.New(w, progress.Config{Label: "stored in clickhouse", Unit: "rows", Total: int64(want), Mode: progress.ModeFor(w, quiet)})
	defer bar.Finish()
	deadline := time.Now().Add(timeout)
	for {
		ev, dl, err := store.Totals(ctx)
		if err == nil {
			bar.Set(int64(min(ev+dl, want)))
			if ev+dl >= want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %s: %d of %d rows stored (is the worker running?)", timeout, ev+dl, want)
		}
		if !consumer.Sleep(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func printSummary(w io.Writer, s clickhouse.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	section := func(title string, rows []clickhouse.Count) {
		fmt.Fprintf(tw, "%s\t\t\n", title)
		if len(rows) == 0 {
			fmt.Fprintf(tw, "  (none)\t\t\n")
		}
		for _, r := range rows {
			fmt.Fprintf(tw, "  %s\t%10d\t\n", r.Key, r.N)
		}
	}
	fmt.Fprintf(tw, "events consumed\t%10d\t\n", s.Events)
	fmt.Fprintf(tw, "dropped events derived\t%10d\t\n", s.Derived)
	fmt.Fprintf(tw, "dead letters\t%10d\t\n", s.DeadLetters)
	section("events by type", s.ByType)
	section("bounces by classification", s.BouncesByClass)
	section("suppression lists", s.SuppressionList)
	section("dead letters by reason", s.DeadLetterCodes)
	tw.Flush()
}
