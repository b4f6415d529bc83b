package main

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("migrate", "create or upgrade bouncer's ClickHouse database", runMigrate)
}

const migrateUsage = `
Usage: bouncer migrate [flags]

Creates the ClickHouse database if needed and applies the schema migrations
embedded in this binary that it has not applied yet (recorded in the
schema_migrations table). Safe to run any number of times, and from several
hosts: every statement is idempotent. bouncer worker runs it at start unless
--migrate=false.

With --cluster NAME (or --clickhouse-cluster, CLICKHOUSE_CLUSTER) the schema
is made for the ClickHouse cluster NAME of replicated shards: Replicated*
tables ON CLUSTER, Distributed tables for reads (docs/cluster.md).

  CLICKHOUSE_ADDR=127.0.0.1:9000 bouncer migrate
  CLICKHOUSE_ADDR=ch1:9000 bouncer migrate --cluster bouncer
`

func runMigrate(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "migrate", migrateUsage)
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
