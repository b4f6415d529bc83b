package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/bouncer-mail/bouncer/schemas/ddl"
)

// Applied describes one migration Migrate ran.
type Applied struct {
	Version int
	Name    string
}

// Migrate creates the database if needed and applies the embedded
// migrations not yet recorded in schema_migrations, in order. Running it
// again applies nothing. Every statement is idempotent, so a migration cut
// short (a crash between its statements and its record) is simply run again.
func Migrate(ctx context.Context, cfg Config) ([]Applied, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	boot, err := ch.Open(cfg.options("default"))
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database)
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	if err := s.conn.Exec(ctx, qMigrationsCreate.SQL); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done := map[int]bool{}
	rows, err := s.conn.Query(ctx, qMigrationsApplied.SQL)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, err
		}
		done[int(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	migrations, err := ddl.Migrations()
	if err != nil {
		return nil, err
	}
	var applied []Applied
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %04d_%s, statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// INSERT ... VALUES through Exec hangs on 18.16; a one-row batch works.
		err := s.insert(ctx, qMigrationsRecord, func(b driver.Batch) error {
			return b.Append(uint32(m.Version), m.Name, time.Now().UTC().Truncate(time.Second))
		})
		if err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, Applied{m.Version, m.Name})
	}
	return applied, nil
}
