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

const eraseUsage = `
Usage: bouncer erase --account ACCOUNT --email ADDRESS [flags]

Answers a privacy (erasure) request: removes ADDRESS from every table of
ACCOUNT that holds it, as POST /bouncer/v1/privacy/erasures does:

  events, recipient_history, suppressions   rows of the account for the address
  dead_letters        rows whose raw bytes mention the address and name the
                      account ("account_id":"ACCOUNT"; for account "default",
                      rows naming no account); --all-dead-letters: every
                      dead letter mentioning the address, whatever account
  webhook_deliveries, webhook_failed_batches
                      (when the tables exist) rows of the account whose text
                      columns mention the address

Free text mentions the address when it holds it as a whole address: JSON
escapes decoded (ann\u0040x.example), ASCII case ignored, and not part of
a longer address (joann@x.example.org does not mention ann@x.example).

Each table is changed with ALTER TABLE ... DELETE (on a cluster, ON CLUSTER
on the local tables) and the command waits for the mutation to finish on
every replica (--wait), then checks nothing is left. Before that,
the removal of each list entry is published to the change-log topic, so
workers' suppression indexes and senders mirroring the lists drop it. A
record (account, SHA-256 of the address, who, when, rows per table) goes
to the erasures table; GET /bouncer/v1/privacy/erasures lists them.

Not erased: copies in Kafka topics (the events topic, the dead-letter and
change-log topics) stay until their retention or compaction removes them,
and ClickHouse backups. An erased address is no longer suppressed.

Erasing again is harmless (it removes nothing and records zero rows).

  bouncer erase --account acme --email kim@example.com
  bouncer erase --account acme --email kim@example.com --all-dead-letters --publish-changes=false

Exit status: 0 erased, 1 failed (erase again), 2 wrong usage.
`

func runErase(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "erase", eraseUsage)
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
