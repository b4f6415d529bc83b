package main

import (
	"context"
	"fmt"
	"math"

	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("migrate", "create or upgrade bouncer's ClickHouse database", runMigrate)
}

func runMigrate(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "migrate")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	cluster := fs.String("cluster", "", "same as --clickhouse-cluster")
	to := fs.Int("to", 0, "apply only the migrations numbered up to this one (0: all)")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	cfg := cf.config()
	if *cluster != "" {
		cfg.Cluster = *cluster
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if *to < 0 {
		return usagef("--to %d: want 0 (all) or a migration number", *to)
	}
	last := math.MaxInt
	if *to > 0 {
		last = *to
	}
	applied, err := clickhouse.MigrateTo(ctx, cfg, last)
	for _, a := range applied {
		fmt.Fprintf(env.stdout, "applied %04d_%s\n", a.Version, a.Name)
	}
	if err != nil {
		return err
	}
	switch {
	case len(applied) == 0 && *to > 0:
		fmt.Fprintf(env.stdout, "database %s has every migration up to %04d\n", cfg.Database, *to)
	case len(applied) == 0:
		fmt.Fprintf(env.stdout, "database %s is up to date\n", cfg.Database)
	}
	return nil
}
