package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

func init() {
	register("erase", "erase one address of an account from every table (a privacy request)", runErase)
}

func runErase(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "erase")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	kf := addKafkaFlags(e)
	acct := fs.String("account", "", "the account (1 to 64 of A-Z a-z 0-9 _ . -)")
	email := fs.String("email", "", "the address to erase (compared trimmed, ASCII letters lower-cased; any address the pipeline stores)")
	allDead := fs.Bool("all-dead-letters", false, "also erase dead letters of other accounts (or of none) that contain the address")
	wait := fs.Duration("wait", 2*time.Minute, "longest wait for each table's delete mutation")
	changeTopic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "compacted topic the workers' suppression index follows; the removals are published there")
	publish := fs.Bool("publish-changes", true, "publish the list removals to the change-log topic (needs Kafka); without it workers' indexes and mirroring senders keep the address suppressed (restarts included: they load the change log)")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("erase takes no arguments; got %q (use --email)", fs.Args())
	}
	if !schemas.ValidAccountID(*acct) {
		return usagef("erase: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", *acct)
	}
	norm, ok := schemas.NormalizeAddress(*email)
	if !ok {
		return usagef("erase: --email %q is not an address", *email)
	}
	if *wait <= 0 {
		return usagef("erase: --wait %v: want a positive duration", *wait)
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
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
	by := "cli"
	if u := env.getenv("USER"); u != "" {
		by = "cli:" + u
	}
	rec, err := suppression.NewService(store, changes, nil).EraseWith(ctx, *acct, norm, by,
		suppression.EraseOptions{AllDeadLetters: *allDead, Wait: *wait}, time.Now())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "table\trows removed\n")
	var total uint64
	for _, t := range rec.Tables {
		fmt.Fprintf(tw, "%s\t%d\n", t.Table, t.Rows)
		total += t.Rows
	}
	tw.Flush()
	fmt.Fprintf(env.stdout, "erased %s of %s: %d rows; record %s (sha256 %s)\n", *email, *acct, total, rec.ID, rec.EmailSHA256)
	if len(rec.Skipped) > 0 {
		fmt.Fprintf(env.stderr, "not searched: %s\n", strings.Join(rec.Skipped, "; "))
	}
	return nil
}
