package main

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/consumer"
)

func init() {
	register("changelog", "rewrite the suppression change log in the partitioning workers' slices need (repartition)", runChangelog)
}

func runChangelog(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || (args[0] != "repartition" && args[0] != "--help" && args[0] != "-h") {
		return usagef("changelog: want repartition (see bouncer changelog --help)")
	}
	fs := newFlagSet(env, "changelog")
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	topic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "compacted topic of suppression list changes")
	dry := fs.Bool("dry-run", false, "only report what would be written")
	if args[0] != "repartition" {
		return parseFlags(fs, env, []string{"--help"})
	}
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("changelog repartition takes no arguments; got %q", fs.Args())
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	rep, err := consumer.RepartitionChangeLog(ctx, conn, *topic, *dry)
	if err != nil {
		return err
	}
	verb := "wrote"
	if *dry {
		verb = "would write"
	}
	_, err = fmt.Fprintf(env.stdout, "%s: read %d messages; %d keys outside their recipient's partition; %s %d copies to their recipient's partition and %d tombstones where they were\n",
		*topic, rep.Read, rep.Misplaced, verb, rep.Copied, rep.Tombstones)
	return err
}
