package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("rollups", "rebuild or update the stats rollups from the events table", runRollups)
}

func runRollups(ctx context.Context, env *environment, args []string) error {
	sub := ""
	if len(args) > 0 && (args[0] == "rebuild" || args[0] == "update" || args[0] == "status" || args[0] == "backfill") {
		sub, args = args[0], args[1:]
	}
	fs := newFlagSet(env, "rollups")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	from := fs.String("from", "1970-01-01", "rebuild, status: first day, YYYY-MM-DD (UTC)")
	to := fs.String("to", "", "rebuild, status: last day, YYYY-MM-DD (UTC); default today")
	acct := fs.String("account", "", "rebuild: only this account (default every account); status: the account (default: default)")
	chunk := fs.Int("chunk-events", 5_000_000, "rebuild: most events one build counts (its memory grows with it)")
	since := fs.Int("since-days", 7, "update: look at marks written in the last this many days")
	readTimeout := fs.Duration("read-timeout", 30*time.Minute, "rebuild, update: how long one build may keep ClickHouse silent (a large account's day on a busy server)")
	chunkDays := fs.Int("chunk-days", 7, "backfill: days one mutation of the events table covers")
	geoDB := e.String("geoip-db", "BOUNCER_GEOIP_DB", "", "backfill: the MaxMind-format geoip database that places ips (the workers' one); empty: places are not filled")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if sub == "" {
		return usagef("rollups: want rebuild, update, status or backfill (bouncer rollups --help)")
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("rollups %s takes no arguments; got %q", sub, fs.Args())
	}
	cfg := cf.config()
	cfg.ReadTimeout = *readTimeout
	store, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	start := time.Now()
	progress := func(done, total int, c clickhouse.RollupChunk, took time.Duration) {
		events := ""
		if c.Events > 0 {
			events = fmt.Sprintf(", %d events", c.Events)
		}
		fmt.Fprintf(env.stdout, "[%d/%d] %s: %d accounts%s in %s\n", done, total, c.Day.Format(time.DateOnly), len(c.Accounts), events, took.Round(time.Millisecond))
	}
	var n int
	if sub == "status" {
		return rollupStatus(ctx, env, store, *from, *to, *acct)
	}
	if sub == "backfill" {
		return rollupBackfill(ctx, env, store, *from, *to, *acct, *chunkDays, *geoDB)
	}
	if sub == "update" {
		if *since < 1 {
			return usagef("rollups update: --since-days %d: want 1 or more", *since)
		}
		n, err = store.UpdateRollups(ctx, time.Now().UTC().AddDate(0, 0, -*since), 0, progress)
	} else {
		f, err := time.Parse(time.DateOnly, *from)
		if err != nil {
			return usagef("rollups rebuild: --from %q: want YYYY-MM-DD", *from)
		}
		t := time.Now().UTC().Truncate(24 * time.Hour)
		if *to != "" {
			if t, err = time.Parse(time.DateOnly, *to); err != nil {
				return usagef("rollups rebuild: --to %q: want YYYY-MM-DD", *to)
			}
		}
		if t.Before(f) {
			return usagef("rollups rebuild: --to %s is before --from %s", *to, *from)
		}
		if *chunk < 1 {
			return usagef("rollups rebuild: --chunk-events %d: want 1 or more", *chunk)
		}
		if *acct != "" && !schemas.ValidAccountID(*acct) {
			return usagef("rollups rebuild: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", *acct)
		}
		n, err = store.RebuildRollups(ctx, clickhouse.RollupOptions{From: f, To: t.AddDate(0, 0, 1), Account: *acct,
			ChunkEvents: uint64(*chunk), Progress: progress,
			WindowProgress: func(done, total, accounts, days int, took time.Duration) {
				fmt.Fprintf(env.stdout, "[windows %d/%d] %d accounts, %d days in %s\n", done, total, accounts, days, took.Round(time.Millisecond))
			}})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s: %d builds in %s\n", sub, n, time.Since(start).Round(time.Millisecond))
	return nil
}

// rollupBackfill fills the user agent and place columns of stored opens
// and clicks, chunk by chunk, printing each chunk as it finishes.
func rollupBackfill(ctx context.Context, env *environment, store *clickhouse.Store, from, to, acct string, chunkDays int, geoDB string) error {
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return usagef("rollups backfill: --from %q: want YYYY-MM-DD", from)
	}
	t := time.Now().UTC().Truncate(24 * time.Hour)
	if to != "" {
		if t, err = time.Parse(time.DateOnly, to); err != nil {
			return usagef("rollups backfill: --to %q: want YYYY-MM-DD", to)
		}
	}
	switch {
	case t.Before(f):
		return usagef("rollups backfill: --to %s is before --from %s", to, from)
	case chunkDays < 1:
		return usagef("rollups backfill: --chunk-days %d: want 1 or more", chunkDays)
	case acct != "" && !schemas.ValidAccountID(acct):
		return usagef("rollups backfill: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", acct)
	}
	agents, err := enrich.NewAgents(0)
	if err != nil {
		return err
	}
	o := clickhouse.BackfillOptions{From: f, To: t.AddDate(0, 0, 1), Account: acct, ChunkDays: chunkDays,
		Agent: func(ua string) (string, string, string) {
			v := agents.Classify(ua)
			return v.Browser, v.Client, v.Device
		},
		Progress: func(done, total int, a, b time.Time, uas, ips int, took time.Duration) {
			fmt.Fprintf(env.stdout, "[%d/%d] %s..%s: %d user agents, %d ips in %s\n", done, total, a.Format(time.DateOnly),
				b.AddDate(0, 0, -1).Format(time.DateOnly), uas, ips, took.Round(time.Millisecond))
		}}
	if geoDB != "" {
		geo, err := enrich.OpenGeo(geoDB)
		if err != nil {
			return usagef("rollups backfill: %v", err)
		}
		defer geo.Close()
		o.Place = func(ip string) (string, string) {
			p := geo.Lookup(ip)
			return p.Country, p.Region
		}
	} else {
		fmt.Fprintln(env.stderr, "rollups backfill: no --geoip-db (BOUNCER_GEOIP_DB): user agents only, places stay empty")
	}
	start := time.Now()
	n, err := store.BackfillAgents(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "backfill: %d chunks in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

func rollupStatus(ctx context.Context, env *environment, store *clickhouse.Store, from, to, acct string) error {
	if acct == "" {
		acct = "default"
	}
	if !schemas.ValidAccountID(acct) {
		return usagef("rollups status: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", acct)
	}
	f, err := time.Parse(time.DateOnly, from)
	if err != nil || from == "1970-01-01" {
		return usagef("rollups status: --from %q: want the first day, YYYY-MM-DD", from)
	}
	t := time.Now().UTC().Truncate(24 * time.Hour)
	if to != "" {
		if t, err = time.Parse(time.DateOnly, to); err != nil {
			return usagef("rollups status: --to %q: want YYYY-MM-DD", to)
		}
	}
	if t.Before(f) || t.Sub(f) > 3660*24*time.Hour {
		return usagef("rollups status: --from %s to --to %s: want at most ten years, in order", from, to)
	}
	days, err := store.RollupStatus(ctx, acct, f, t.AddDate(0, 0, 1))
	if err != nil {
		return err
	}
	for d := f; !d.After(t); d = d.AddDate(0, 0, 1) {
		where, ok := days[d]
		if !ok {
			where = clickhouse.FromEvents
		}
		fmt.Fprintf(env.stdout, "%s %s\n", d.Format(time.DateOnly), where)
	}
	return nil
}

// rollupLoop updates the rollups of recently marked days (bouncer rollups
// update), pausing rollupPause between updates: several workers doing it at
// once only repeat work, the newest build of a day wins.
func rollupLoop(ctx context.Context, store *clickhouse.Store, interval time.Duration, log *slog.Logger) {
	var took time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(rollupPause(interval, took)):
		}
		start := time.Now()
		n, err := store.UpdateRollups(ctx, time.Now().UTC().AddDate(0, 0, -2), 0, nil)
		took = time.Since(start)
		if err != nil && ctx.Err() == nil {
			log.Warn("rollups: update failed (stats read those days from the events table meanwhile)", "err", err)
		} else if n > 0 {
			log.Debug("rollups: updated", "builds", n, "took", took.Round(time.Millisecond))
		}
	}
}

// rollupDuty bounds the share of time a worker's rollup updates take: after
// an update that took d, the next waits at least rollupDuty times d.
const rollupDuty = 10

// rollupPause is the wait before the next rollup update: interval, or
// rollupDuty times the last update's duration (took) when that is longer.
// A build re-reads its whole day, so on a big day, or on a server short of
// CPU (a backlog being ingested), updates every interval would take most
// of the server's time from the inserts and the stats reads; meanwhile the
// days not yet covered are read from the events table, as exact.
func rollupPause(interval, took time.Duration) time.Duration {
	return max(interval, rollupDuty*took)
}
