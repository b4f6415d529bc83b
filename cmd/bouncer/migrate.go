package main

import (
	"context"
	"fmt"

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
	applied, err := clickhouse.Migrate(ctx, cfg)
	for _, a := range applied {
		fmt.Fprintf(env.stdout, "applied %04d_%s\n", a.Version, a.Name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(env.stdout, "database %s is up to date\n", cfg.Database)
	}
	return nil
}
