package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/schemas/ddl"
	"github.com/bouncer-mail/bouncer/suppression"
)

// fallbackDeliveriesDDL stands in for the webhook delivery log while its
// migration does not exist yet; the real one is used when it does.
const fallbackDeliveriesDDL = "CREATE TABLE IF NOT EXISTS webhook_deliveries (account_id String, endpoint_id String, " +
	"webhook_id String, attempt UInt32, status UInt16, response String, at DateTime) ENGINE = MergeTree ORDER BY (account_id, at)"

func deliveriesDDL(t *testing.T) string {
	t.Helper()
	ms, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			if strings.Contains(s, "webhook_deliveries") && strings.HasPrefix(strings.ToUpper(s), "CREATE TABLE") {
				return s
			}
		}
	}
	return fallbackDeliveriesDDL
}

// insertDelivery writes one row into webhook_deliveries.
// failedBatchesDDL is the migration's webhook_failed_batches statement, or
// "" when there is none.
func failedBatchesDDL(t *testing.T) string {
	t.Helper()
	ms, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		for _, s := range m.Statements {
			if strings.Contains(s, "webhook_failed_batches") && strings.HasPrefix(strings.ToUpper(s), "CREATE TABLE") {
				return s
			}
		}
	}
	return ""
}

func insertDelivery(t *testing.T, s *Store, account, text string) {
	t.Helper()
	insertRow(t, s, "webhook_deliveries", account, text)
}

// insertRow writes one row into table, whatever its columns: account_id is
// account, every other String column text.
func insertRow(t *testing.T, s *Store, table, account, text string) {
	t.Helper()
	ctx := context.Background()
	var cols []string
	if err := s.collect(ctx, Query{SQL: "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?"}, &cols, table); err != nil {
		t.Fatal(err)
	}
	batch, err := s.conn.PrepareBatch(ctx, insertSQL(table, cols))
	if err != nil {
		t.Fatal(err)
	}
	var row []any
	for _, c := range batch.Columns() {
		v, err := zeroValue(string(c.Type()))
		if err != nil {
			t.Fatal(err)
		}
		if c.Name() == "account_id" {
			v = account
		} else if string(c.Type()) == "String" {
			v = text
		}
		row = append(row, v)
	}
	if err := batch.Append(row...); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, s *Store, sql string) uint64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestEraseRemovesTheAddressEverywhere writes one address into every table
// for two accounts, erases it for one, and checks each table: the account's
// rows of the address are gone, everything else is there.
func TestEraseRemovesTheAddressEverywhere(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Unix(1764201600, 0).UTC()
	const kim = "kim@example.com"
	ev := func(acct, email string, off int64) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Offset: off, Event: "bounce", AccountID: acct, SGEventID: fmt.Sprint("e", off),
			Email: strings.ToUpper(email[:1]) + email[1:], EmailNorm: email, Domain: "example.com", Timestamp: t0.Unix(),
			Reason: "550 5.1.1 <" + email + ">: user unknown"}}
	}
	if err := s.WriteEvents(ctx, []pipeline.Row{ev("acme", kim, 1), ev("acme", kim, 2), ev("acme", "lee@example.com", 3), ev("globex", kim, 4)}); err != nil {
		t.Fatal(err)
	}
	var sup []suppression.Change
	for _, c := range []struct {
		acct, list string
		group      int64
		email      string
	}{{"acme", "bounces", 0, kim}, {"acme", "unsubscribes", 7, kim}, {"acme", "bounces", 0, "lee@example.com"}, {"globex", "bounces", 0, kim}} {
		display := strings.ToUpper(c.email[:1]) + strings.Replace(c.email[1:], "@e", "@E", 1) // Kim@Example.com
		sup = append(sup, suppression.Change{AccountID: c.acct, List: c.list, GroupID: c.group, EmailNorm: c.email, Email: display, At: t0})
	}
	if err := s.WriteSuppressions(ctx, sup); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteHistory(ctx, []pipeline.HistoryEvent{{AccountID: "acme", EmailNorm: kim, Event: "delivered", Timestamp: t0.Unix()},
		{AccountID: "globex", EmailNorm: kim, Event: "delivered", Timestamp: t0.Unix()}}); err != nil {
		t.Fatal(err)
	}
	dl := func(off int64, raw string) schemas.DeadLetter {
		return schemas.DeadLetter{Topic: "t", Offset: off, Index: -1, Code: "bad_json", Raw: []byte(raw)}
	}
	if err := s.WriteDeadLetters(ctx, []schemas.DeadLetter{
		dl(10, `{"account_id":"acme","email":"KIM@example.com","event":`),        // acme's: erased
		dl(11, `{"account_id": "globex", "email":"kim@example.com","event":`),    // globex's: kept
		dl(12, `{"email":"kim@example.com","event":"nope"}`),                     // the default account's: kept
		dl(13, `{"account_id":"acme","email":"lee@example.com","event":"nope"}`), // another address: kept
	}); err != nil {
		t.Fatal(err)
	}

	keys, err := s.SuppressionKeys(ctx, "acme", kim)
	if err != nil {
		t.Fatal(err)
	}
	if want := []suppression.Key{{List: "bounces", GroupID: 0, Email: "Kim@Example.com", Latest: t0}, {List: "unsubscribes", GroupID: 7, Email: "Kim@Example.com", Latest: t0}}; !slices.EqualFunc(keys, want, func(a, b suppression.Key) bool {
		return a.List == b.List && a.GroupID == b.GroupID && a.Email == b.Email && a.Latest.Equal(b.Latest)
	}) {
		t.Errorf("SuppressionKeys: %+v, want %+v", keys, want)
	}

	// Without the optional table: no error, and it is not listed.
	for _, table := range []string{"webhook_deliveries", "webhook_failed_batches"} {
		if err := s.conn.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			t.Fatal(err)
		}
	}
	tables, skipped, err := s.Erase(ctx, "acme", "nobody@example.com", suppression.EraseOptions{})
	if err != nil {
		t.Fatalf("erase without webhook_deliveries: %v", err)
	}
	if len(tables) != 4 || len(skipped) != 0 {
		t.Errorf("erase of an unknown address: %+v %v, want the four tables with 0 rows", tables, skipped)
	}
	for _, tb := range tables {
		if tb.Rows != 0 {
			t.Errorf("erase of an unknown address removed %d rows of %s", tb.Rows, tb.Table)
		}
	}

	// With it.
	if err := s.conn.Exec(ctx, deliveriesDDL(t)); err != nil {
		t.Fatal(err)
	}
	insertDelivery(t, s, "acme", "200 OK: got <Kim@Example.com>")
	insertDelivery(t, s, "acme", "200 OK")
	insertDelivery(t, s, "globex", "200 OK: got <kim@example.com>")
	failedBatches := false
	if stmt := failedBatchesDDL(t); stmt != "" {
		if err := s.conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
		failedBatches = true
		insertRow(t, s, "webhook_failed_batches", "acme", `[{"email":"Kim@Example.com","event":"bounce"}]`)
		insertRow(t, s, "webhook_failed_batches", "globex", `[{"email":"kim@example.com","event":"bounce"}]`)
	}

	tables, skipped, err = s.Erase(ctx, "acme", kim, suppression.EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []suppression.ErasedTable{{Table: "events", Rows: 2}, {Table: "suppressions", Rows: 2}, {Table: "recipient_history", Rows: 1}, {Table: "dead_letters", Rows: 1}, {Table: "webhook_deliveries", Rows: 1}}
	if failedBatches {
		want = append(want, suppression.ErasedTable{Table: "webhook_failed_batches", Rows: 1})
		defer func() {
			if got := count(t, s, "SELECT count() FROM webhook_failed_batches"); got != 1 {
				t.Errorf("failed batches left: %d, want globex's 1", got)
			}
		}()
	}
	if !slices.Equal(tables, want) || len(skipped) != 0 {
		t.Errorf("erase: %+v, skipped %v; want %+v", tables, skipped, want)
	}
	for _, c := range []struct {
		sql  string
		want uint64
	}{
		{"SELECT count() FROM events WHERE account_id = 'acme' AND email_norm = 'kim@example.com'", 0},
		{"SELECT count() FROM events WHERE account_id = 'acme'", 1},
		{"SELECT count() FROM events WHERE account_id = 'globex'", 1},
		{"SELECT count() FROM suppressions WHERE account_id = 'acme' AND email_norm = 'kim@example.com'", 0},
		{"SELECT count() FROM suppressions", 2},
		{"SELECT count() FROM recipient_history WHERE account_id = 'acme'", 0},
		{"SELECT count() FROM recipient_history", 1},
		{"SELECT count() FROM dead_letters WHERE kafka_offset = 10", 0},
		{"SELECT count() FROM dead_letters", 3},
		{"SELECT count() FROM webhook_deliveries WHERE account_id = 'acme'", 1},
		{"SELECT count() FROM webhook_deliveries WHERE account_id = 'globex'", 1},
		{"SELECT count() FROM system.mutations WHERE database = currentDatabase() AND positionCaseInsensitive(command, 'kim@') > 0", 0},
	} {
		if got := count(t, s, c.sql); got != c.want {
			t.Errorf("%s: %d, want %d", c.sql, got, c.want)
		}
	}

	// Again: nothing left to remove, no error.
	tables, _, err = s.Erase(ctx, "acme", kim, suppression.EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Rows != 0 {
			t.Errorf("second erase removed %d rows of %s", tb.Rows, tb.Table)
		}
	}

	// The operator's option takes the dead letters of every account.
	tables, _, err = s.Erase(ctx, "acme", kim, suppression.EraseOptions{AllDeadLetters: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, "SELECT count() FROM dead_letters"); got != 1 || !slices.Contains(tables, suppression.ErasedTable{Table: "dead_letters", Rows: 2}) {
		t.Errorf("AllDeadLetters: %d dead letters left, tables %+v; want 1 left, 2 removed", got, tables)
	}

	// The record.
	rec := suppression.Erasure{AccountID: "acme", ID: "er1", EmailSHA256: suppression.EmailSHA256(kim), RequestedBy: "key:abc", At: t0, Tables: want}
	if err := s.WriteErasure(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Erasures(ctx, "acme", 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != "er1" || !slices.Equal(got[0].Tables, want) || !got[0].At.Equal(t0) {
		t.Errorf("Erasures: %+v, %v", got, err)
	}
	if other, _ := s.Erasures(ctx, "globex", 0, 10); len(other) != 0 {
		t.Errorf("globex sees acme's erasure records: %+v", other)
	}
	if count(t, s, "SELECT count() FROM erasures WHERE positionCaseInsensitive(concat(email_sha256, requested_by, erasure_id), 'kim') > 0") != 0 {
		t.Error("the erasure record holds the address")
	}
	var sum string
	if err := s.conn.QueryRow(ctx, "SELECT lower(hex(SHA256(?)))", kim).Scan(&sum); err != nil || sum != suppression.EmailSHA256(kim) {
		t.Errorf("ClickHouse's SHA256 %q, Go's %q (%v)", sum, suppression.EmailSHA256(kim), err)
	}
}

// TestEraseMatchesExactly: erasing ann@x.example removes the rows that
// mention that address, JSON-escaped forms included, and none that mention
// a longer one (joann@x.example.org, ann@x.example.org); erasing the Kelvin
// sign's address removes its rows written before addresses folded ASCII
// case only (email_norm kim@...), not kim's.
func TestEraseMatchesExactly(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	const ann, kelvin = "ann@x.example", "\u212Aim@x.example"
	var dls []schemas.DeadLetter
	for i, raw := range []string{
		`{"account_id":"acme","email":"ann@x.example","event":`,             // erased
		`{"account_id":"acme","email":"ann\u0040x.example","event":"nope"}`, // erased: escaped
		`{"account_id":"acme","email":"\u0041nn\u0040X\u002eexample"}`,      // erased: escaped, capitals
		`{"account_id":"acme","reason":"550 <ANN@X.EXAMPLE>: gone"}`,        // erased
		`{"account_id":"acme","email":"joann@x.example.org","event":`,       // kept
		`{"account_id":"acme","email":"ann@x.example.org","event":`,         // kept
		`{"account_id":"acme","email":"jo.ann@x.example","event":`,          // kept
		`{"account_id":"acme","email":"ann\u0040x.example\u002eorg"}`,       // kept: escaped longer one
	} {
		dls = append(dls, schemas.DeadLetter{Topic: "t", Offset: int64(i), Index: -1, Code: "bad_json", Raw: []byte(raw)})
	}
	if err := s.WriteDeadLetters(ctx, dls); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.Exec(ctx, deliveriesDDL(t)); err != nil {
		t.Fatal(err)
	}
	insertDelivery(t, s, "acme", `{"to":"joann@x.example.org"}`)
	insertDelivery(t, s, "acme", `{"to":"ann\u0040x.example"}`)
	failedBatches := failedBatchesDDL(t) != ""
	if failedBatches {
		if err := s.conn.Exec(ctx, failedBatchesDDL(t)); err != nil {
			t.Fatal(err)
		}
		insertRow(t, s, "webhook_failed_batches", "acme", `[{"email":"joann@x.example.org","smtp-id":"\u003cm1@x\u003e"}]`)
		insertRow(t, s, "webhook_failed_batches", "acme", `[{"email":"x\u003cann@x.example"}]`)
	}
	t0 := time.Unix(1764201600, 0).UTC()
	ev := func(off int64, email, norm string) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Offset: off, Event: "delivered", AccountID: "acme", SGEventID: fmt.Sprint("e", off),
			Email: email, EmailNorm: norm, Domain: "x.example", Timestamp: t0.Unix()}}
	}
	// Offset 1 is the Kelvin sign's row as written before: its email_norm
	// folded the sign to k.
	if err := s.WriteEvents(ctx, []pipeline.Row{ev(1, kelvin, "kim@x.example"), ev(2, " Kim@X.example", "kim@x.example"), ev(3, ann, ann)}); err != nil {
		t.Fatal(err)
	}

	tables, _, err := s.Erase(ctx, "acme", ann, suppression.EraseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"events": 1, "dead_letters": 4, "webhook_deliveries": 1}
	if failedBatches {
		want["webhook_failed_batches"] = 1
	}
	for _, tb := range tables {
		if tb.Rows != want[tb.Table] {
			t.Errorf("erase ann: %s: %d rows removed, want %d", tb.Table, tb.Rows, want[tb.Table])
		}
	}
	if got := count(t, s, "SELECT count() FROM dead_letters WHERE kafka_offset IN (4, 5, 6, 7)"); got != 4 {
		t.Errorf("dead letters of longer addresses left: %d, want 4", got)
	}
	if got := count(t, s, "SELECT count() FROM webhook_deliveries WHERE position(response, 'joann') > 0 OR position(endpoint_id, 'joann') > 0 OR account_id = 'acme'"); got != 1 {
		t.Errorf("deliveries left: %d, want joann's 1", got)
	}
	if failedBatches {
		if got := count(t, s, "SELECT count() FROM webhook_failed_batches"); got != 1 {
			t.Errorf("failed batches left: %d, want joann's 1", got)
		}
	}

	if _, _, err := s.Erase(ctx, "acme", kelvin, suppression.EraseOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, "SELECT count() FROM events WHERE kafka_offset = 1"); got != 0 {
		t.Error("the Kelvin sign's row written before the fix is left")
	}
	if got := count(t, s, "SELECT count() FROM events WHERE kafka_offset = 2"); got != 1 {
		t.Error("erasing the Kelvin sign's address removed kim's row")
	}
}
