package clickhouse

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
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
//
// With cfg.Cluster set, every statement runs ON CLUSTER in its cluster form
// (clusterStatements: Replicated* tables, Distributed tables for reads), and
// schema_migrations is replicated to every server. A database made for one
// server is refused rather than mixed with cluster tables.
func Migrate(ctx context.Context, cfg Config) ([]Applied, error) {
	return MigrateTo(ctx, cfg, math.MaxInt)
}

// MigrateTo is Migrate applying only the migrations numbered up to last:
// a long one (0022 moves recipient_history's rows) can be run on its own.
func MigrateTo(ctx context.Context, cfg Config, last int) ([]Applied, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	boot, err := ch.Open(cfg.options("default"))
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	// CREATE ... IF NOT EXISTS ON CLUSTER waits for every server even when
	// there is nothing to create, so a worker started while one replica is
	// down would hang here: statements whose object exists are skipped.
	dbExists, err := exists(ctx, boot, "SELECT count() FROM system.databases WHERE name = ?", cfg.Database)
	if err == nil && !dbExists {
		create := "CREATE DATABASE IF NOT EXISTS " + cfg.Database
		if cfg.Cluster != "" {
			create += " ON CLUSTER " + cfg.Cluster
		}
		err = boot.Exec(ctx, create)
	}
	if err == nil && cfg.Cluster != "" {
		err = checkClusterDatabase(ctx, boot, cfg.Database)
	}
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("create database %s: %w", cfg.Database, err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	createMigrations := []string{qMigrationsCreate.SQL}
	if cfg.Cluster != "" {
		if createMigrations, err = clusterStatements(qMigrationsCreate.SQL, cfg.Database, cfg.Cluster); err != nil {
			return nil, err
		}
	}
	have, err := exists(ctx, s.conn, "SELECT count() FROM system.tables WHERE database = ? AND name = 'schema_migrations'", cfg.Database)
	if err != nil {
		return nil, fmt.Errorf("find schema_migrations: %w", err)
	}
	if !have {
		if err := execAll(ctx, s.conn, cfg.Database, createMigrations); err != nil {
			return nil, fmt.Errorf("create schema_migrations: %w", err)
		}
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
		if done[m.Version] || m.Version > last {
			continue
		}
		statements, err := guardSwaps(m.Statements)
		if err != nil {
			return applied, fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
		}
		for i, stmt := range statements {
			stmts := []string{stmt}
			if cfg.Cluster != "" {
				if stmts, err = clusterStatements(stmt, cfg.Database, cfg.Cluster); err != nil {
					return applied, fmt.Errorf("migration %04d_%s, statement %d: %w", m.Version, m.Name, i+1, err)
				}
			}
			if err := s.execMigration(ctx, stmts); err != nil {
				return applied, fmt.Errorf("migration %04d_%s, statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// INSERT ... VALUES through Exec hangs on 18.16; a one-row batch works.
		err = s.insert(ctx, qMigrationsRecord, func(b driver.Batch) error {
			return b.Append(uint32(m.Version), m.Name, time.Now().UTC().Truncate(time.Second))
		})
		if err != nil {
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		applied = append(applied, Applied{m.Version, m.Name})
	}
	return applied, nil
}

// execMigration runs one migration statement's statements (several on a
// cluster, see clusterStatements). On a cluster a statement without ON
// CLUSTER runs on every server of system.clusters directly, each asked
// whether it is done already: every server must answer, as for distributed
// DDL.
func (s *Store) execMigration(ctx context.Context, stmts []string) error {
	for _, stmt := range stmts {
		if rest, ok := strings.CutPrefix(stmt, oncePerReplicaSet); ok && s.cluster != nil {
			if insertSelect.MatchString(rest) {
				if err := s.moveOnReplicaSets(ctx, rest); err != nil {
					return err
				}
				continue
			}
			if err := s.addReplicatedColumn(ctx, rest); err != nil {
				return err
			}
			continue
		}
		if s.cluster == nil || strings.Contains(stmt, " ON CLUSTER ") {
			if err := execAll(ctx, s.conn, s.cfg.Database, []string{stmt}); err != nil {
				return err
			}
			continue
		}
		for _, sh := range s.cluster.shards {
			for _, r := range sh.replicas {
				if err := execAll(ctx, r.conn, s.cfg.Database, []string{stmt}); err != nil {
					return fmt.Errorf("on %s: %w", r.addr, err)
				}
			}
		}
	}
	return nil
}

// addReplicatedColumn runs an ADD COLUMN of a replicated table on one
// replica of each of its replica sets (the first that answers), then waits
// until every server of the cluster has the column, as distributed DDL
// would (up to its 180 s, then an error that names the servers still
// without it).
func (s *Store) addReplicatedColumn(ctx context.Context, stmt string) error {
	m := addColumnTarget.FindStringSubmatch(stmt)
	if m == nil {
		return fmt.Errorf("not an ADD COLUMN: %.80s", stmt)
	}
	db, table, column := cmp.Or(m[1], s.cfg.Database), m[2], m[3]
	err := s.onReplicaSets(table, func(r replica) error {
		return execAll(ctx, r.conn, s.cfg.Database, []string{stmt})
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(180 * time.Second)
	for {
		var missing []string
		for _, sh := range s.cluster.shards {
			for _, r := range sh.replicas {
				have, err := exists(ctx, r.conn, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", db, table, column)
				if err != nil || !have {
					missing = append(missing, r.addr)
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("column %s.%s.%s still missing on %s after 180s (is every server up and replicating?)", db, table, column, strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// onReplicaSets runs do on one replica of each replica set of table (each
// shard for a <name>_local table, the whole cluster for a table on every
// server): the first replica of the set for which do succeeds.
func (s *Store) onReplicaSets(table string, do func(r replica) error) error {
	var sets [][]replica
	if strings.HasSuffix(table, localSuffix) {
		for _, sh := range s.cluster.shards {
			sets = append(sets, sh.replicas)
		}
	} else {
		var all []replica
		for _, sh := range s.cluster.shards {
			all = append(all, sh.replicas...)
		}
		sets = [][]replica{all}
	}
	for _, set := range sets {
		var errs []error
		for _, r := range set {
			err := do(r)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, fmt.Errorf("on %s: %w", r.addr, err))
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return nil
}

// moveOnReplicaSets runs a migration's move (moveRows) of one replicated
// table into another on one replica of each replica set of the source.
func (s *Store) moveOnReplicaSets(ctx context.Context, stmt string) error {
	_, src := splitName(s.cfg.Database, insertSelect.FindStringSubmatch(stmt)[4])
	return s.onReplicaSets(src, func(r replica) error {
		return moveRows(ctx, r.conn, s.cfg.Database, stmt, true)
	})
}

// execAll runs stmts in database db: a statement of a table swap is
// skipped where its guard exists, a move runs as moveRows (on a cluster
// both come here per server or per replica set, see execMigration), and an
// ADD COLUMN whose column exists is skipped: ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS, and a migration
// cut short after some of its statements runs again from the first.
func execAll(ctx context.Context, conn driver.Conn, db string, stmts []string) error {
	for _, given := range stmts {
		skip, stmt, err := skipGuarded(ctx, conn, db, given)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if insertSelect.MatchString(stmt) {
			if err := moveRows(ctx, conn, db, stmt, false); err != nil {
				return err
			}
			continue
		}
		m := addColumnTarget.FindStringSubmatch(stmt)
		haveColumn := func() (bool, error) {
			inDB := cmp.Or(m[1], db)
			have, err := exists(ctx, conn, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", inDB, m[2], m[3])
			if err != nil {
				return false, fmt.Errorf("find column %s.%s.%s: %w", inDB, m[2], m[3], err)
			}
			return have, nil
		}
		if m != nil {
			have, err := haveColumn()
			if err != nil {
				return err
			}
			if have {
				continue
			}
		}
		if err := conn.Exec(ctx, stmt); err != nil {
			// Another process migrating at the same time (workers starting
			// together) may have added the column since: done.
			if m != nil {
				if have, cerr := haveColumn(); cerr == nil && have {
					continue
				}
			}
			// Or made the table swap this statement is part of: its
			// RENAME found the swapped-out name taken, or (on a cluster)
			// its CREATE found the new table's ZooKeeper path taken by the
			// table swapped in. 18.16 may say the name is taken a moment
			// before EXISTS TABLE sees it (the other RENAME is midway).
			if given != stmt && swapMade(ctx, conn, db, given) {
				continue
			}
			return err
		}
	}
	return nil
}

// checkClusterDatabase refuses a database whose events table was made for
// one server: its rows would be invisible to the Distributed tables.
func checkClusterDatabase(ctx context.Context, conn driver.Conn, db string) error {
	var engine string
	err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'events'", db).Scan(&engine)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check database %s: %w", db, err)
	}
	if engine != "Distributed" {
		return fmt.Errorf("database %s was created for a single server (events is %s): bouncer migrate --cluster cannot convert it; use a new database (--clickhouse-database) or migrate without --cluster", db, engine)
	}
	return nil
}

// exists reports whether a count() query answers more than zero.
func exists(ctx context.Context, conn driver.Conn, q string, args ...any) (bool, error) {
	var n uint64
	if err := conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}
