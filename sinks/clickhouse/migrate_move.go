package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// # Rebuilding a table
//
// ClickHouse cannot change some properties of a table in place (its
// index_granularity, for one). A migration rebuilds such a table in two
// steps, each a numbered migration (0021 and 0022 for recipient_history):
//
//  1. CREATE TABLE IF NOT EXISTS t_new (...) with new SETTINGS, then
//     RENAME TABLE t TO t_old, t_new TO t. Writers use the new table from
//     then on. Both statements are skipped where the swap was made: t_old
//     exists, or t has t_new's SETTINGS (after step 2 dropped t_old). A
//     migration cut short runs again from its first statement, and so does
//     one that other processes apply at the same time (workers started
//     together): creating t_new again would leave a stray table (on a
//     cluster, one whose ZooKeeper path is the swapped-in table's), and a
//     second swap would swap the new table out.
//  2. INSERT INTO t (cols) SELECT cols FROM t_old, run as a move (moveRows),
//     then DROP TABLE IF EXISTS t_old (and t_new, which a process that
//     checked step 1's guard just before another swapped may have created
//     again, empty).

// tableName is a table's name, with an optional database, as a capture
// group of the patterns below.
const tableName = `((?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*)`

// swapGuard marks a statement of a swap that Migrate skips, per server,
// where the swap was made: "/* unless exists T_OLD or T has SETTING */
// STATEMENT" (names with an optional database).
var swapGuard = regexp.MustCompile(`(?s)^/\* unless exists ` + tableName + ` or ` + tableName + ` has ([^*]+) \*/ (.*)$`)

// renameSwap is the one RENAME the migrations may use: a swap of a new
// table in for an old one.
var renameSwap = regexp.MustCompile(`(?s)^RENAME TABLE ` + tableName + ` TO ` + tableName + `, ` + tableName + ` TO ` + tableName + `$`)

// insertSelect is a move of every row of one table into another (moveRows).
var insertSelect = regexp.MustCompile(`(?s)^INSERT INTO ` + tableName + ` \(([^()]*)\)\s+SELECT ([^()]*) FROM ` + tableName + `$`)

// dropTable drops a table the migrations made obsolete.
var dropTable = regexp.MustCompile(`^DROP TABLE IF EXISTS ([A-Za-z_][A-Za-z0-9_]*)$`)

// settingsClause is what follows SETTINGS in a CREATE TABLE.
var settingsClause = regexp.MustCompile(`(?s)\bSETTINGS\s+(.+?)\s*$`)

var (
	// EXISTS TABLE and SHOW CREATE TABLE, not system.tables: 18.16 fails
	// a read of system.tables when a table is renamed while it lists them
	// (another process migrating at the same time). The table is named in
	// the SQL (tableExists, tableSettings): identifiers cannot be bound.
	qTableExists = register(Query{Name: "migrate.table_exists",
		SQL: "EXISTS TABLE schema_migrations"})
	qShowCreate = register(Query{Name: "migrate.show_create",
		SQL: "SHOW CREATE TABLE schema_migrations"})
	qPartitionKey = register(Query{Name: "migrate.partition_key",
		SQL:    "SELECT partition_key FROM system.tables WHERE database = ? AND name = ?",
		Sample: []any{"default", "events"}})
	qMovePartitions = register(Query{Name: "migrate.move_partitions",
		SQL:    "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY partition DESC",
		Sample: []any{"default", "events"}})
)

// guardSwaps returns a migration's statements, a swap's (see above) marked
// with swapGuard: a RENAME TABLE a TO b, c TO a and the CREATE TABLE of c
// (which must have a SETTINGS clause, the new layout) are skipped where b
// exists or a has c's settings.
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
		table, old, fresh := m[1], m[2], m[3]
		created := false
		for j, s := range stmts {
			c := createTable.FindStringSubmatch(s)
			if c == nil || c[1] != fresh {
				continue
			}
			set := settingsClause.FindStringSubmatch(c[5])
			if set == nil || strings.Contains(set[1], "*") {
				return nil, fmt.Errorf("RENAME TABLE swaps in %s, whose CREATE TABLE has no SETTINGS that tell it from %s", fresh, table)
			}
			g := swapCheck{old: old, table: table, settings: strings.Join(strings.Fields(set[1]), " ")}
			out[i], out[j], created = g.mark(stmt), g.mark(s), true
		}
		if !created {
			return nil, fmt.Errorf("RENAME TABLE swaps in %s, which the same migration does not create", fresh)
		}
	}
	return out, nil
}

// swapCheck tells whether a swap was made: old exists, or table has
// settings.
type swapCheck struct{ old, table, settings string }

func (g swapCheck) mark(stmt string) string {
	return "/* unless exists " + g.old + " or " + g.table + " has " + g.settings + " */ " + stmt
}

// made reports whether the swap was made on conn.
func (g swapCheck) made(ctx context.Context, conn driver.Conn, db string) (bool, error) {
	oldDB, old := splitName(db, g.old)
	if have, err := tableExists(ctx, conn, oldDB, old); err != nil || have {
		return have, err
	}
	inDB, table := splitName(db, g.table)
	create, err := showCreate(ctx, conn, inDB, table)
	if err != nil || create == "" {
		return false, err
	}
	create = strings.Join(strings.Fields(create), " ")
	for rest := create; ; {
		i := strings.Index(rest, g.settings)
		if i < 0 {
			return false, nil
		}
		rest = rest[i+len(g.settings):]
		if rest == "" || !isIdentChar(rest[0]) {
			return true, nil
		}
	}
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// skipGuarded reports whether stmt is a statement of a swap that was made
// on conn, and returns the statement without its guard.
func skipGuarded(ctx context.Context, conn driver.Conn, db, stmt string) (bool, string, error) {
	g, body, ok := parseGuard(stmt)
	if !ok {
		return false, stmt, nil
	}
	made, err := g.made(ctx, conn, db)
	return made, body, err
}

func parseGuard(stmt string) (swapCheck, string, bool) {
	m := swapGuard.FindStringSubmatch(stmt)
	if m == nil {
		return swapCheck{}, stmt, false
	}
	return swapCheck{old: m[1], table: m[2], settings: m[3]}, m[4], true
}

// swapMade is called when a swap's statement failed: it reports whether
// another process made the swap (18.16 may refuse a RENAME whose target a
// concurrent RENAME is creating a moment before EXISTS TABLE sees it: it
// asks for up to a second). A RENAME a TO b, c TO a that renamed a and then
// failed (c was gone: another process swapped and finished the move) is
// undone first: b back to a.
func swapMade(ctx context.Context, conn driver.Conn, db, stmt string) bool {
	g, body, ok := parseGuard(stmt)
	if !ok {
		return false
	}
	if r := renameSwap.FindStringSubmatch(body); r != nil {
		aDB, a := splitName(db, r[1])
		bDB, b := splitName(db, r[2])
		haveA, errA := tableExists(ctx, conn, aDB, a)
		haveB, errB := tableExists(ctx, conn, bDB, b)
		if errA == nil && errB == nil && !haveA && haveB {
			if err := conn.Exec(ctx, fmt.Sprintf("RENAME TABLE %s.%s TO %s.%s", bDB, b, aDB, a)); err != nil {
				return false
			}
		}
	}
	for range 10 {
		if made, err := g.made(ctx, conn, db); err == nil && made {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// showCreate is db.table's CREATE statement, "" when it does not exist.
func showCreate(ctx context.Context, conn driver.Conn, db, table string) (string, error) {
	if have, err := tableExists(ctx, conn, db, table); err != nil || !have {
		return "", err
	}
	var create string
	sql := strings.Replace(qShowCreate.SQL, "schema_migrations", db+"."+table, 1)
	if err := conn.QueryRow(ctx, sql).Scan(&create); err != nil {
		// Renamed away since EXISTS TABLE.
		if have, cerr := tableExists(ctx, conn, db, table); cerr == nil && !have {
			return "", nil
		}
		return "", fmt.Errorf("%s %s.%s: %w", qShowCreate.Name, db, table, err)
	}
	return create, nil
}

// tableExists reports whether db.table exists (both are identifiers: the
// migrations' regular expressions and Config.Validate checked them).
func tableExists(ctx context.Context, conn driver.Conn, db, table string) (bool, error) {
	var have uint8
	sql := strings.Replace(qTableExists.SQL, "schema_migrations", db+"."+table, 1)
	if err := conn.QueryRow(ctx, sql).Scan(&have); err != nil {
		return false, fmt.Errorf("%s %s.%s: %w", qTableExists.Name, db, table, err)
	}
	return have == 1, nil
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
// copying a second time). A missing src means the move is done. Two
// processes moving at once may both copy a partition. With
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
	have, err := tableExists(ctx, conn, srcDB, srcTable)
	if err != nil || !have {
		return err
	}
	// Another process migrating at the same time may drop the source from
	// here on: then the move is done.
	gone := func(err error) error {
		if have, cerr := tableExists(ctx, conn, srcDB, srcTable); cerr == nil && !have {
			return nil
		}
		return err
	}
	source := srcDB + "." + srcTable
	if replicated {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+source); err != nil {
			return gone(fmt.Errorf("sync replica %s: %w", source, err))
		}
	}
	var key string
	if err := conn.QueryRow(ctx, qPartitionKey.SQL, srcDB, srcTable).Scan(&key); err != nil {
		return gone(fmt.Errorf("%s %s: %w", qPartitionKey.Name, source, err))
	}
	if key == "" {
		return fmt.Errorf("move rows from %s: the table has no partition key", source)
	}
	var partitions []string
	rows, err := conn.Query(ctx, qMovePartitions.SQL, srcDB, srcTable)
	if err != nil {
		return gone(fmt.Errorf("%s %s: %w", qMovePartitions.Name, source, err))
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
			return gone(fmt.Errorf("copy partition %s of %s into %s: %w", p, source, target, err))
		}
		if err := conn.Exec(ctx, dropSQL); err != nil {
			return gone(fmt.Errorf("drop partition %s of %s (copied into %s): %w", p, source, target, err))
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
