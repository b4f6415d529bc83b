package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas/ddl"
)

// historyLayout is the last migration with recipient_history's first
// layout (index_granularity 8192), and the two that rebuild it.
const (
	historyOldLayout = 20
	historySwap      = 21
	historyMove      = 22
)

// fillHistory writes rows recipients' history rows into recipient_history
// with one INSERT ... SELECT (one part per ingest month): recipient i of
// account acme is r<i>@example.com, its rows stamped day days before at
// and written on ingest.
func fillHistory(t *testing.T, conn driver.Conn, rows, recipients int, ingest, at time.Time) {
	t.Helper()
	sql := fmt.Sprintf("INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) "+
		"SELECT toDate('%s'), 'acme', concat('r', toString(number %% %d), '@example.com'), toDateTime(%d) - intDiv(number, %d) * 3600 - number %% 977, "+
		"if(number %% 3 = 0, 'bounce', 'delivered'), if(number %% 3 = 0, 'mailbox_full', ''), if(number %% 3 = 0, 'soft', '') FROM system.numbers LIMIT %d",
		ingest.Format("2006-01-02"), recipients, at.Unix(), recipients, rows)
	if err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("fill recipient_history: %v", err)
	}
}

// historyPrint is the row count and a checksum of the content (every
// column) of recipient_history's rows matching where, or of its distinct
// rows.
func historyPrint(t *testing.T, conn driver.Conn, where string, distinct bool) string {
	t.Helper()
	from := "recipient_history WHERE " + where
	if distinct {
		from = "(SELECT DISTINCT * FROM " + from + ")"
	}
	var n, sum uint64
	err := conn.QueryRow(context.Background(), "SELECT count(), sum(cityHash64(ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type)) FROM "+from).Scan(&n, &sum)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d rows, checksum %d", n, sum)
}

func tableNames(t *testing.T, conn driver.Conn, db, like string) []string {
	t.Helper()
	var out []string
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.tables WHERE database = ? AND name LIKE ? ORDER BY name", db, like)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func granularity(t *testing.T, conn driver.Conn, db, table string) string {
	t.Helper()
	var engine string
	if err := conn.QueryRow(context.Background(), "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&engine); err != nil {
		t.Fatalf("engine of %s: %v", table, err)
	}
	if _, g, ok := strings.Cut(engine, "index_granularity = "); ok {
		return g
	}
	return "8192" // the default, which 18.16 does not print
}

// rerun runs migration version's statements again, as Migrate does after a
// crash between its statements and its record.
func rerun(t *testing.T, conn driver.Conn, db string, version int) {
	t.Helper()
	ms, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := guardSwaps(ms[version-1].Statements)
	if err != nil {
		t.Fatal(err)
	}
	if err := execAll(context.Background(), conn, db, stmts); err != nil {
		t.Fatalf("migration %d again: %v", version, err)
	}
}

// oldHistory is a database migrated up to recipient_history's first
// layout, with rows history rows of recipients recipients in each of the
// last months ingest months (fillHistory).
func oldHistory(t *testing.T, months, rows, recipients int) (Config, driver.Conn, time.Time) {
	t.Helper()
	addr := testenv.ClickHouse(t)
	cfg := Config{Addr: []string{addr}, Database: testenv.Database(t, addr)}
	if _, err := MigrateTo(context.Background(), cfg, historyOldLayout); err != nil {
		t.Fatal(err)
	}
	conn := testenv.Open(t, addr, cfg.Database)
	now := time.Now().UTC()
	for m := range months {
		fillHistory(t, conn, rows, recipients, now.AddDate(0, -m, 0), now.AddDate(0, -m, 0))
	}
	return cfg, conn, now
}

// The rebuild of recipient_history (0021, 0022) keeps every row, in a
// table of 256 rows a granule; what a worker writes between the swap and
// the move lands in the new table; each step run again after it finished
// (a crash before its record, or another process migrating at the same
// time) changes nothing.
func TestHistoryRebuildKeepsRows(t *testing.T) {
	ctx := context.Background()
	cfg, conn, now := oldHistory(t, 4, 30_000, 5_000)
	db := cfg.Database
	before := historyPrint(t, conn, "1", false)
	if g := granularity(t, conn, db, "recipient_history"); g != "8192" {
		t.Fatalf("before 0021: granularity %s", g)
	}

	if _, err := MigrateTo(ctx, cfg, historySwap); err != nil {
		t.Fatal(err)
	}
	if g := granularity(t, conn, db, "recipient_history"); g != "256" {
		t.Errorf("after 0021: recipient_history has granularity %s, want 256", g)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	late := pipeline.HistoryEvent{AccountID: "late", EmailNorm: "kim@example.com", Event: "delivered", Timestamp: now.Unix()}
	if err := s.WriteHistory(ctx, []pipeline.HistoryEvent{late}); err != nil {
		t.Fatal(err)
	}
	rerun(t, conn, db, historySwap)
	if got := tableNames(t, conn, db, "recipient_history%"); strings.Join(got, " ") != "recipient_history recipient_history_g8192" {
		t.Errorf("after 0021 and its rerun: tables %v, want recipient_history and recipient_history_g8192", got)
	}
	if got := historyPrint(t, conn, "1", false); !strings.HasPrefix(got, "1 rows") {
		t.Errorf("after 0021 and its rerun, recipient_history holds %s, want the late row alone", got)
	}

	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	rerun(t, conn, db, historyMove)
	// 0021 again once the old table is gone (a process that read
	// schema_migrations before another applied both): the swap is seen
	// in the table's settings and not made again.
	rerun(t, conn, db, historySwap)
	if got := historyPrint(t, conn, "account_id != 'late'", false); got != before {
		t.Errorf("after 0022: %s, want %s as before", got, before)
	}
	if got := historyPrint(t, conn, "account_id = 'late'", false); !strings.HasPrefix(got, "1 rows") {
		t.Errorf("the row written between 0021 and 0022: %s, want 1", got)
	}
	if got := tableNames(t, conn, db, "recipient_history%"); strings.Join(got, " ") != "recipient_history" {
		t.Errorf("after 0022: tables %v, want recipient_history alone", got)
	}
	if g := granularity(t, conn, db, "recipient_history"); g != "256" {
		t.Errorf("after 0022: granularity %s, want 256", g)
	}
}

// A move cut short (some partitions moved, the source still there) and run
// again copies what is left: every row once, except the partition it was
// moving when it stopped, which may be there twice.
func TestHistoryMoveResumes(t *testing.T) {
	ctx := context.Background()
	cfg, conn, now := oldHistory(t, 3, 2_000, 500)
	db := cfg.Database
	before := historyPrint(t, conn, "1", false)
	if _, err := MigrateTo(ctx, cfg, historySwap); err != nil {
		t.Fatal(err)
	}
	// Cut short: the newest month moved (copied and dropped from the
	// source), the next one copied but not yet dropped.
	newest, next := now.Format("200601"), now.AddDate(0, -1, 0).Format("200601")
	for _, q := range []string{
		"INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) SELECT ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type FROM recipient_history_g8192 WHERE toYYYYMM(ingest_date) = " + newest,
		"ALTER TABLE recipient_history_g8192 DROP PARTITION " + newest,
		"INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) SELECT ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type FROM recipient_history_g8192 WHERE toYYYYMM(ingest_date) = " + next,
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// fillHistory writes distinct rows: every row is there, once outside
	// the month that was being moved.
	if got := historyPrint(t, conn, "1", true); got != before {
		t.Errorf("after the move ran again, the distinct rows: %s, want %s as before", got, before)
	}
	var n, distinct uint64
	if err := conn.QueryRow(ctx, "SELECT count(), uniqExact(ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) FROM recipient_history WHERE toYYYYMM(ingest_date) != "+next).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct {
		t.Errorf("outside %s: %d rows, %d distinct: a month moved before the cut was moved again", next, n, distinct)
	}
	if got := tableNames(t, conn, db, "recipient_history%"); strings.Join(got, " ") != "recipient_history" {
		t.Errorf("after the move: tables %v, want recipient_history alone", got)
	}
}

// historyReadRows runs RecipientHistory and returns its rows and the rows
// the server read for it (system.query_log, by query id).
func historyReadRows(t *testing.T, s *Store, conn driver.Conn, emails []string, since time.Time) ([]pipeline.HistoryEvent, uint64) {
	t.Helper()
	id := fmt.Sprintf("history-read-%d", time.Now().UnixNano())
	ctx := ch.Context(context.Background(), ch.WithQueryID(id), ch.WithSettings(ch.Settings{"log_queries": 1}))
	got, err := s.RecipientHistory(ctx, "acme", emails, since)
	if err != nil {
		t.Fatal(err)
	}
	// The server logs a query when it finishes it, which may come after
	// the client has its last block: flush until the entry is there.
	var read uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := conn.Exec(context.Background(), "SYSTEM FLUSH LOGS"); err != nil {
			t.Fatal(err)
		}
		err := conn.QueryRow(context.Background(), "SELECT read_rows FROM system.query_log WHERE query_id = ? AND type = 2", id).Scan(&read)
		if err == nil {
			return got, read
		}
		if time.Now().After(deadline) {
			t.Fatalf("read_rows of query %s: %v", id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A history read of a few recipients reads the granules that hold their
// rows, in the ingest months it needs: at most two granules of 256 rows
// per recipient and part (their rows here fit in one granule, and may
// straddle two), in a table of 120,000 rows this month and 30,000 in each
// of three older months. The table of 8192 rows a granule, read the same
// way, reads more than that bound (so the bound tells the layouts apart).
func TestHistoryReadGranules(t *testing.T) {
	addr := testenv.ClickHouse(t)
	ctx := context.Background()
	now := time.Now().UTC()
	emails := []string{"r17@example.com", "r5003@example.com", "r10009@example.com", "r15011@example.com", "r19999@example.com"}
	since := now.AddDate(0, 0, -10)
	for _, tc := range []struct {
		layout   string
		last     int
		inBounds bool
	}{{"g256", historyMove, true}, {"g8192_before_0021", historyOldLayout, false}} {
		t.Run(tc.layout, func(t *testing.T) {
			db := testenv.Database(t, addr)
			cfg := Config{Addr: []string{addr}, Database: db}
			if _, err := MigrateTo(ctx, cfg, tc.last); err != nil {
				t.Fatal(err)
			}
			conn := testenv.Open(t, addr, db)
			// 20,000 recipients with 6 rows each over the last 6 hours;
			// three older months the read must not touch.
			fillHistory(t, conn, 120_000, 20_000, now, now)
			for m := 2; m <= 4; m++ {
				fillHistory(t, conn, 30_000, 20_000, now.AddDate(0, -m, 0), now.AddDate(0, -m, 0))
			}
			s, err := Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got, read := historyReadRows(t, s, conn, emails, since)
			per := map[string]int{}
			for _, e := range got {
				per[e.EmailNorm]++
			}
			for _, e := range emails {
				if per[e] != 6 {
					t.Errorf("%s: %d rows, want its 6", e, per[e])
				}
			}
			var parts uint64
			// The read needs the ingest months from 10 days (plus a week's
			// slack) ago on: this month's, and last month's when it starts
			// less than 17 days ago (here empty).
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = ? AND table = 'recipient_history' AND active AND partition >= ?",
				db, now.AddDate(0, -1, 0).Format("200601")).Scan(&parts); err != nil {
				t.Fatal(err)
			}
			bound := uint64(len(emails)) * 2 * 256 * parts
			t.Logf("%s: read %d rows for %d rows of %d recipients (bound %d: %d parts in the months read)", tc.layout, read, len(got), len(emails), bound, parts)
			if tc.inBounds && read > bound {
				t.Errorf("read %d rows, want at most %d (2 granules of 256 per recipient and part)", read, bound)
			}
			if !tc.inBounds && read <= bound {
				t.Errorf("the old layout read %d rows, within the bound %d: the bound does not tell the layouts apart", read, bound)
			}
		})
	}
}

// The statements of a move (moveRows) run on a current ClickHouse (chdb):
// recipient_history's rebuild on a table holding a row of one partition.
func TestHistoryMoveOnCurrentClickHouse(t *testing.T) {
	ms, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var stmts []checkStatement
	add := func(name, sql string) { stmts = append(stmts, checkStatement{Name: name, Kind: "ddl", SQL: sql}) }
	add("0003", ms[2].Statements[0])
	add("a row", "INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) VALUES ('2001-02-03', 'acme', 'kim@example.com', '2001-02-03 04:05:06', 'delivered', '', '')")
	for i, s := range ms[historySwap-1].Statements {
		add(fmt.Sprintf("0021 #%d", i+1), s)
	}
	move := insertSelect.FindStringSubmatch(ms[historyMove-1].Statements[0])
	copySQL, dropSQL := movePartitionSQL(move[1], move[2], move[3], move[4], "toYYYYMM(ingest_date)", "200102")
	add("copy a partition", copySQL)
	add("drop it", dropSQL)
	for _, q := range []Query{qTableExists, qShowCreate} {
		stmts = append(stmts, checkStatement{Name: q.Name, Kind: "query", SQL: strings.Replace(q.SQL, "schema_migrations", "recipient_history", 1)})
	}
	for _, q := range []Query{qPartitionKey, qMovePartitions} {
		sql, err := renderSQL(q.SQL, []any{"default", "recipient_history"})
		if err != nil {
			t.Fatal(err)
		}
		stmts = append(stmts, checkStatement{Name: q.Name, Kind: "query", SQL: strings.Replace(sql, "'default'", "currentDatabase()", 1)})
	}
	stmts = append(stmts, checkStatement{Name: "the row moved", Kind: "query",
		SQL: "SELECT throwIf((SELECT count() FROM recipient_history WHERE email_norm = 'kim@example.com') != 1 OR (SELECT count() FROM recipient_history_g8192) != 0, 'not moved')"})
	runChdbCheck(t, context.Background(), stmts)
}
