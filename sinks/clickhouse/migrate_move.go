package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// # Rebuilding a table
//
// ClickHouse cannot change some properties of a table in place (its
// index_granularity, for one). A migration rebuilds such a table in two
// steps, each a numbered migration (0021 and 0022 for recipient_history):
//
//  1. CREATE TABLE IF NOT EXISTS t_new (...) with the new properties, then
//     RENAME TABLE t TO t_old, t_new TO t. Writers use the new table from
//     then on. Both statements are skipped when t_old exists: the swap
//     happened, and a migration cut short runs again from its first
//     statement (creating t_new again would make a stray table, and on a
//     cluster one whose ZooKeeper path is the swapped-in table's).
//  2. INSERT INTO t (cols) SELECT cols FROM t_old, run as a move (moveRows),
//     then DROP TABLE IF EXISTS t_old.
//
// The two steps are two migrations so that "t_old exists" tells a finished
// swap from one not yet made: once t_old is dropped, the first migration is
// recorded already.

// swapGuard marks a statement Migrate skips, per server, when a table
// exists: "/* unless exists DB.TABLE */ STATEMENT" (database optional).
var swapGuard = regexp.MustCompile(`(?s)^/\* unless exists ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*) \*/ (.*)$`)

// renameSwap is the one RENAME the migrations may use: a swap of a new
// table in for an old one.
var renameSwap = regexp.MustCompile(`(?s)^RENAME TABLE ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*) TO ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*), ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*) TO ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*)$`)

// insertSelect is a move of every row of one table into another (moveRows).
var insertSelect = regexp.MustCompile(`(?s)^INSERT INTO ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*) \(([^()]*)\)\s+SELECT ([^()]*) FROM ((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*)$`)

// dropTable drops a table the migrations made obsolete.
var dropTable = regexp.MustCompile(`^DROP TABLE IF EXISTS ([A-Za-z_][A-Za-z0-9_]*)$`)

var (
	qTableExists = register(Query{Name: "migrate.table_exists",
		SQL:    "SELECT count() FROM system.tables WHERE database = ? AND name = ?",
		Sample: []any{"default", "events"}})
	qPartitionKey = register(Query{Name: "migrate.partition_key",
		SQL:    "SELECT partition_key FROM system.tables WHERE database = ? AND name = ?",
		Sample: []any{"default", "events"}})
	qMovePartitions = register(Query{Name: "migrate.move_partitions",
		SQL:    "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY partition DESC",
		Sample: []any{"default", "events"}})
)

// guardSwaps returns m's statements, the swap's (see above) marked with
// swapGuard: a RENAME TABLE a TO b, c TO a and the CREATE TABLE of c are
// skipped where b exists.
func guardSwaps(stmts []string) ([]string, error) {
	out := append([]string(nil), stmts...)
	for i, stmt := range stmts {
		m := renameSwap.FindStringSubmatch(stmt)
		if m == nil {
			continue
		}
		if m[4] != m[1] {
			return nil, fmt.Errorf("RENAME TABLE must swap a table in for another (a TO b, c TO a): %.120s", stmt)
		}
		old, fresh := m[2], m[3]
		out[i] = guarded(old, stmt)
		created := false
		for j, s := range stmts {
			if c := createTable.FindStringSubmatch(s); c != nil && c[1] == fresh {
				out[j], created = guarded(old, s), true
			}
		}
		if !created {
			return nil, fmt.Errorf("RENAME TABLE swaps in %s, which the same migration does not create", fresh)
		}
	}
	return out, nil
}

func guarded(table, stmt string) string {
	return "/* unless exists " + table + " */ " + stmt
}

// skipGuarded reports whether stmt is guarded by a table that exists on
// conn, and returns the statement without its guard.
func skipGuarded(ctx context.Context, conn driver.Conn, db, stmt string) (bool, string, error) {
	m := swapGuard.FindStringSubmatch(stmt)
	if m == nil {
		return false, stmt, nil
	}
	inDB, table := splitName(db, m[1])
	have, err := exists(ctx, conn, qTableExists.SQL, inDB, table)
	if err != nil {
		return false, m[2], fmt.Errorf("%s %s.%s: %w", qTableExists.Name, inDB, table, err)
	}
	return have, m[2], nil
}

// splitName splits "db.table" (or "table", in database db).
func splitName(db, name string) (string, string) {
	if d, t, ok := strings.Cut(name, "."); ok {
		return d, t
	}
	return db, name
}

// moveRows runs an INSERT INTO t (cols) SELECT cols FROM src of a migration
// as a move: for each partition of src, newest first, it copies the
// partition's rows and then drops the partition from src, so a move cut
// short and run again copies only what is left (and the partition it was
// copying a second time). A missing src means the move is done. With
// replicated set, src is a Replicated* table: the replica first fetches
// every part it is missing (SYSTEM SYNC REPLICA), and the drops reach the
// other replicas through replication.
func moveRows(ctx context.Context, conn driver.Conn, db, stmt string, replicated bool) error {
	m := insertSelect.FindStringSubmatch(stmt)
	if m == nil {
		return fmt.Errorf("not an INSERT ... SELECT: %.80s", stmt)
	}
	target, columns, selected, src := m[1], m[2], m[3], m[4]
	srcDB, srcTable := splitName(db, src)
	have, err := exists(ctx, conn, qTableExists.SQL, srcDB, srcTable)
	if err != nil {
		return fmt.Errorf("%s %s.%s: %w", qTableExists.Name, srcDB, srcTable, err)
	}
	if !have {
		return nil
	}
	source := srcDB + "." + srcTable
	if replicated {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+source); err != nil {
			return fmt.Errorf("sync replica %s: %w", source, err)
		}
	}
	var key string
	if err := conn.QueryRow(ctx, qPartitionKey.SQL, srcDB, srcTable).Scan(&key); err != nil {
		return fmt.Errorf("%s %s: %w", qPartitionKey.Name, source, err)
	}
	if key == "" {
		return fmt.Errorf("move rows from %s: the table has no partition key", source)
	}
	var partitions []string
	rows, err := conn.Query(ctx, qMovePartitions.SQL, srcDB, srcTable)
	if err != nil {
		return fmt.Errorf("%s %s: %w", qMovePartitions.Name, source, err)
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return err
		}
		partitions = append(partitions, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range partitions {
		copySQL, dropSQL := movePartitionSQL(target, columns, selected, source, key, p)
		if err := conn.Exec(ctx, copySQL); err != nil {
			return fmt.Errorf("copy partition %s of %s into %s: %w", p, source, target, err)
		}
		if err := conn.Exec(ctx, dropSQL); err != nil {
			return fmt.Errorf("drop partition %s of %s (copied into %s): %w", p, source, target, err)
		}
	}
	return nil
}

// movePartitionSQL copies partition p (as system.parts names it) of source,
// whose partition key is key, into target, and drops it from source.
func movePartitionSQL(target, columns, selected, source, key, p string) (copySQL, dropSQL string) {
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s WHERE (%s) = %s", target, columns, selected, source, key, p),
		fmt.Sprintf("ALTER TABLE %s DROP PARTITION %s", source, p)
}
