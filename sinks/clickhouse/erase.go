package clickhouse

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// OptionalEraseTables are tables other parts of bouncer add that can hold
// an address in free text: the webhook delivery log (responses) and the
// failed webhook batches (the events, as JSON: a batch that holds the
// address is deleted whole, so it can no longer be replayed from the API).
// Erase searches every String column of each one that exists for a mention
// of the address (schemas.MentionsAddress), rows of the account only (a table without an account_id column is skipped and
// reported).
var OptionalEraseTables = []string{"webhook_deliveries", "webhook_failed_batches"}

// SuppressionKeys returns the list entries the suppressions table holds for
// one address of one account, removed ones included.
func (s *Store) SuppressionKeys(ctx context.Context, account, emailNorm string) ([]suppression.Key, error) {
	rows, err := s.conn.Query(ctx, qEraseSuppressionKeys.SQL, account, emailNorm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qEraseSuppressionKeys.Name, err)
	}
	defer rows.Close()
	var out []suppression.Key
	for rows.Next() {
		var k suppression.Key
		if err := rows.Scan(&k.List, &k.GroupID, &k.Email, &k.Latest); err != nil {
			return nil, fmt.Errorf("%s: %w", qEraseSuppressionKeys.Name, err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Erase removes one address of one account from every table that holds it:
// events, suppressions and recipient_history (rows of the account whose
// email_norm is the address), dead_letters (see suppression.EraseOptions and
// qEraseFindDeadLetters) and the optional tables that exist. Each table is
// changed with ALTER TABLE ... DELETE (on a cluster ON CLUSTER on the local
// tables, see mutationSQL), and Erase waits for the mutation to finish
// (system.mutations, of every replica on a cluster) and checks that no
// matching row is left before going on. It returns the rows removed per table touched (tables with no
// row of the address are listed with 0) and the optional tables it skipped
// with why. Erasing again is harmless: it removes nothing.
func (s *Store) Erase(ctx context.Context, account, emailNorm string, opt suppression.EraseOptions) ([]suppression.ErasedTable, []string, error) {
	if opt.Wait <= 0 {
		opt.Wait = 2 * time.Minute
	}
	if opt.Poll <= 0 {
		opt.Poll = 100 * time.Millisecond
	}
	hash := suppression.EmailSHA256(emailNorm)
	// The stats rollups of the address's days are stale until rebuilt
	// after the mutation: mark them before and after it (rollups.go).
	days, err := s.erasedDays(ctx, account, hash)
	if err == nil {
		err = s.markErasure(ctx, account, days, 2*opt.Wait)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("erase: mark the stats rollups: %w", err)
	}
	var out []suppression.ErasedTable
	var skipped []string
	for _, t := range []struct {
		table      string
		count, del Query
	}{
		{"events", qEraseCountEvents, qEraseEvents},
		{"suppressions", qEraseCountSuppressions, qEraseSuppressions},
		{"recipient_history", qEraseCountHistory, qEraseHistory},
	} {
		args := []any{account, hash}
		if t.table != "recipient_history" {
			args = append(args, hash) // hashMatch: email_norm or email
		}
		n, err := s.eraseKeyed(ctx, t.table, t.count, t.del, opt, args...)
		if err != nil {
			return out, skipped, err
		}
		if t.table == "events" {
			if err := s.markErasure(ctx, account, days, 0); err != nil {
				return out, skipped, fmt.Errorf("erase: mark the stats rollups: %w", err)
			}
		}
		out = append(out, suppression.ErasedTable{Table: t.table, Rows: n})
	}

	ids, err := s.mentioning(ctx, qEraseFindDeadLetters, emailNorm, emailNorm, accountPattern(account),
		b2u(account == "default"), b2u(opt.AllDeadLetters))
	if err != nil {
		return out, skipped, err
	}
	if err := s.deleteByIdentity(ctx, "dead_letters", qEraseDeadLetters, ids, opt); err != nil {
		return out, skipped, err
	}
	out = append(out, suppression.ErasedTable{Table: "dead_letters", Rows: uint64(len(ids))})

	var tables []string
	if err := s.collect(ctx, qEraseTables, &tables); err != nil {
		return out, skipped, err
	}
	for _, table := range OptionalEraseTables {
		if !slices.Contains(tables, table) {
			continue
		}
		find, del, why, err := s.freeTextStatements(ctx, table)
		if err != nil {
			return out, skipped, err
		}
		if why != "" {
			skipped = append(skipped, table+": "+why)
			continue
		}
		args := []any{account}
		for range strings.Count(find.SQL, "positionCaseInsensitive") {
			args = append(args, emailNorm)
		}
		ids, err := s.mentioning(ctx, find, emailNorm, args...)
		if err != nil {
			return out, skipped, err
		}
		if err := s.deleteByIdentity(ctx, table, del, ids, opt); err != nil {
			return out, skipped, err
		}
		out = append(out, suppression.ErasedTable{Table: table, Rows: uint64(len(ids))})
	}
	return out, skipped, nil
}

// eraseKeyed deletes the rows of (account, address hash) from a table keyed
// by email_norm and returns how many there were.
func (s *Store) eraseKeyed(ctx context.Context, table string, count, del Query, opt suppression.EraseOptions, args ...any) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, count.SQL, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", count.Name, err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.conn.Exec(ctx, s.mutationSQL(del, table), args...); err != nil {
		return 0, fmt.Errorf("%s: %w", del.Name, err)
	}
	if err := s.waitMutations(ctx, table, opt); err != nil {
		return 0, err
	}
	var left uint64
	if err := s.conn.QueryRow(ctx, count.SQL, args...).Scan(&left); err != nil {
		return 0, fmt.Errorf("%s: %w", count.Name, err)
	}
	if left != 0 {
		return 0, fmt.Errorf("erase %s: %d rows left after the mutation finished (rows written meanwhile?): erase again", table, left)
	}
	return n, nil
}

// mentioning runs q, whose rows are (identity hash, text), and returns the
// hashes of the rows whose text mentions the address as a whole one
// (schemas.MentionsAddress: JSON escapes decoded, not inside a longer
// address). q only finds candidates; rows are read one at a time.
func (s *Store) mentioning(ctx context.Context, q Query, emailNorm string, args ...any) ([]uint64, error) {
	rows, err := s.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		if schemas.MentionsAddress([]byte(text), emailNorm) {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	return ids, nil
}

// eraseChunk bounds the identity hashes of one mutation.
const eraseChunk = 1000

// deleteByIdentity deletes the rows whose identity hash is in ids.
func (s *Store) deleteByIdentity(ctx context.Context, table string, del Query, ids []uint64, opt suppression.EraseOptions) error {
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), eraseChunk)]
		ids = ids[len(chunk):]
		list := make([]string, len(chunk))
		for i, id := range chunk {
			list[i] = strconv.FormatUint(id, 10)
		}
		if err := s.conn.Exec(ctx, s.mutationSQL(del, table), strings.Join(list, ",")); err != nil {
			return fmt.Errorf("%s: %w", del.Name, err)
		}
		if err := s.waitMutations(ctx, table, opt); err != nil {
			return err
		}
	}
	return nil
}

// waitMutations waits until table has no unfinished mutation. ClickHouse
// 18.16 does not report a failed mutation (it retries it forever), so a
// mutation that does not finish within opt.Wait is an error.
func (s *Store) waitMutations(ctx context.Context, table string, opt suppression.EraseOptions) error {
	deadline := time.Now().Add(opt.Wait)
	for {
		pending, err := s.pendingMutations(ctx, table)
		if err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("erase %s: the delete mutation has not finished after %v (see system.mutations; it goes on in the background: erase again later to check)", table, opt.Wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opt.Poll):
		}
	}
}

// mutationSQL is the ALTER TABLE ... DELETE of q for table. ClickHouse
// refuses mutations of a Distributed table, so on a cluster it runs ON
// CLUSTER on the local tables: the DDL queue hands it to one replica of each
// shard, and replication applies it to the other.
func (s *Store) mutationSQL(q Query, table string) string {
	if s.cluster == nil {
		return q.SQL
	}
	to := fmt.Sprintf("ALTER TABLE `%s`.`%s%s` ON CLUSTER `%s` ", s.cfg.Database, table, localSuffix, s.cfg.Cluster)
	for _, from := range []string{"ALTER TABLE " + table + " ", "ALTER TABLE `" + table + "` "} {
		if strings.HasPrefix(q.SQL, from) {
			return to + strings.TrimPrefix(q.SQL, from)
		}
	}
	return q.SQL // not a mutation of table: ClickHouse will say so
}

// pendingMutations counts table's unfinished mutations; on a cluster, those
// of its local table on every replica not declared lost, each asked
// directly, so an erase is done only when every copy is.
func (s *Store) pendingMutations(ctx context.Context, table string) (uint64, error) {
	if s.cluster == nil {
		var n uint64
		if err := s.conn.QueryRow(ctx, qErasePendingMutations.SQL, table).Scan(&n); err != nil {
			return 0, fmt.Errorf("%s: %w", qErasePendingMutations.Name, err)
		}
		return n, nil
	}
	var total uint64
	for _, sh := range s.cluster.shards {
		for _, r := range sh.replicas {
			if slices.Contains(s.cfg.LostReplicas, r.addr) {
				continue
			}
			var n uint64
			if err := r.conn.QueryRow(ctx, qErasePendingMutations.SQL, table+localSuffix).Scan(&n); err != nil {
				return 0, fmt.Errorf("%s on shard %d replica %s: %w", qErasePendingMutations.Name, sh.num, r.addr, err)
			}
			total += n
		}
	}
	return total, nil
}

// collect scans a one-column query into *dst.
func collect[T any](ctx context.Context, conn driver.Conn, q Query, dst *[]T, args ...any) error {
	rows, err := conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return fmt.Errorf("%s: %w", q.Name, err)
		}
		*dst = append(*dst, v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	return nil
}

func (s *Store) collect(ctx context.Context, q Query, dst any, args ...any) error {
	switch d := dst.(type) {
	case *[]uint64:
		return collect(ctx, s.conn, q, d, args...)
	case *[]string:
		return collect(ctx, s.conn, q, d, args...)
	}
	return fmt.Errorf("collect: unsupported %T", dst)
}

// accountPattern is the RE2 pattern of `"account_id":"<account>"` in raw
// JSON (account ids are [A-Za-z0-9_.-]: only the dot needs escaping).
func accountPattern(account string) string {
	return `"account_id"\s*:\s*"` + regexp.QuoteMeta(account) + `"`
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// freeTextStatements builds, from a table's columns, the statements that
// find an account's rows whose String columns contain an address
// (arguments: account, then the address once per String column) and delete
// rows by identity hash (argument: the hashes, comma-separated). The identity hash covers
// every column of a plain type. why is set when the table cannot be
// erased this way.
func (s *Store) freeTextStatements(ctx context.Context, table string) (find, del Query, why string, err error) {
	rows, err := s.conn.Query(ctx, qEraseColumns.SQL, table)
	if err != nil {
		return find, del, "", fmt.Errorf("%s: %w", qEraseColumns.Name, err)
	}
	defer rows.Close()
	var text, ident []string
	hasAccount := false
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return find, del, "", fmt.Errorf("%s: %w", qEraseColumns.Name, err)
		}
		if !identifier.MatchString(name) {
			continue
		}
		col := "`" + name + "`"
		switch {
		case name == "account_id":
			hasAccount = true
			ident = append(ident, col)
		case typ == "String":
			text = append(text, col)
			ident = append(ident, col)
		case !strings.ContainsAny(typ, "()"): // numbers, dates: plain types
			ident = append(ident, col)
		}
	}
	if err := rows.Err(); err != nil {
		return find, del, "", fmt.Errorf("%s: %w", qEraseColumns.Name, err)
	}
	switch {
	case !hasAccount:
		return find, del, "no account_id column, so its rows cannot be told apart by account: not erased", nil
	case len(text) == 0:
		return find, del, "no String column: holds no address", nil
	}
	// Candidates hold the address as it is or any backslash (it may be
	// JSON-escaped); Erase keeps those that mention it (mentioning). The
	// columns are joined by a NUL, which no address holds.
	var conds []string
	for _, c := range text {
		conds = append(conds, "positionCaseInsensitive("+c+", ?) > 0 OR position("+c+", '\\\\') > 0")
	}
	id := "cityHash64(" + strings.Join(ident, ", ") + ")"
	joined := text[0]
	if len(text) > 1 {
		joined = "concat(" + strings.Join(text, ", '\\0', ") + ")"
	}
	find = Query{Name: "erase.find_" + table,
		SQL: "SELECT " + id + ", " + joined + " FROM `" + table + "` WHERE account_id = ? AND (" + strings.Join(conds, " OR ") + ")"}
	del = Query{Name: "erase." + table, SQL: "ALTER TABLE `" + table + "` DELETE WHERE has(splitByChar(',', ?), toString(" + id + "))"}
	return find, del, "", nil
}

// WriteErasure stores the record of an erasure.
func (s *Store) WriteErasure(ctx context.Context, e suppression.Erasure) error {
	tables := make([]string, len(e.Tables))
	counts := make([]uint64, len(e.Tables))
	for i, t := range e.Tables {
		tables[i], counts[i] = t.Table, t.Rows
	}
	return s.insert(ctx, qInsertErasures, func(b driver.Batch) error {
		return b.Append(e.AccountID, e.ID, e.EmailSHA256, e.RequestedBy, e.At.UTC().Truncate(time.Second), tables, counts)
	})
}

// Erasures returns an account's erasure records, newest first.
func (s *Store) Erasures(ctx context.Context, account string, offset, limit uint64) ([]suppression.Erasure, error) {
	rows, err := s.conn.Query(ctx, qErasures.SQL, account, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qErasures.Name, err)
	}
	defer rows.Close()
	var out []suppression.Erasure
	for rows.Next() {
		e := suppression.Erasure{AccountID: account}
		var tables []string
		var counts []uint64
		if err := rows.Scan(&e.ID, &e.EmailSHA256, &e.RequestedBy, &e.At, &tables, &counts); err != nil {
			return nil, fmt.Errorf("%s: %w", qErasures.Name, err)
		}
		for i := range tables {
			if i < len(counts) {
				e.Tables = append(e.Tables, suppression.ErasedTable{Table: tables[i], Rows: counts[i]})
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
