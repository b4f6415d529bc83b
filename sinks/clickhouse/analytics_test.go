package clickhouse

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// analyticsDoc is the document whose example queries TestAnalytics runs.
const analyticsDoc = "../../docs/analytics.md"

// analyticsWant holds, per example query of docs/analytics.md in document
// order, its result rows computed by hand from analyticsData: columns
// joined by a tab, as ClickHouse's TabSeparated format writes them (Date
// 2006-01-02, DateTime 2006-01-02 15:04:05 UTC, shortest floats).
var analyticsWant = [][]string{
	// 1. bounce rate by provider this week (2026-11-23 .. 11-26).
	{"other\t1\t1\t1", "google\t2\t1\t0.5", "microsoft\t4\t2\t0.5", "yahoo\t1\t0\t0"},
	// 2. top bounce reasons in the last 7 days (b8 of 11-16 is older).
	{"ip_blocked\t3", "user_unknown\t1"},
	// 3. hard bounces per category: b2 [newsletter promo], b8 [newsletter].
	{"newsletter\t2", "promo\t1"},
	// 4. suppression growth: entries on the lists now, by day added.
	{
		"2026-11-24\tbounces\t1",
		"2026-11-25\tblocks\t1",
		"2026-11-25\tunsubscribes\t1",
		"2026-11-26\tblocks\t2",
		"2026-11-26\tbounces\t1",
	},
	// 5. current list sizes: g removed, j removed in the same second.
	{"blocks\t3", "bounces\t2", "unsubscribes\t1"},
	// 6. deferral to delivery: 10:00:05 -> 10:10:00, 08:00:10 -> 08:30:00.
	{"msg1\t2\t595", "msg5\t1\t1790"},
	// 7. delivered to first open: 10:10:00 -> 11:10:00, 09:00:30 -> 09:02:30.
	{"msg1\ta@gmail.com\t3600", "msg3\tc@outlook.com\t120"},
	// 8. classification mix per day, last 7 days.
	{"2026-11-24\tInvalid Address\t1", "2026-11-25\tReputation\t1", "2026-11-26\tReputation\t2"},
	// 9. domains by blocks (globex's block is another account).
	{"outlook.com\t2\t2", "corp.example\t1\t1"},
	// 10. dead letters by code (offset 100 written twice).
	{"invalid_json\t2", "non_utf8\t1"},
	// 11. soft-bounce escalations still on the list.
	{"e@yahoo.com\tmailbox_full\t2026-11-26 20:00:00"},
	// 12. derived drops.
	{"Bounced Address\t1\t0"},
	// 13. funnel per day this week (p1 resent, p7 dropped by bouncer).
	{"2026-11-24\t2\t1\t1", "2026-11-25\t3\t2\t1", "2026-11-26\t3\t1\t0"},
}

func at(s string) int64 {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t.Unix()
}

// analyticsData is the fixed dataset of TestAnalytics.
func analyticsData() ([]pipeline.Row, []suppression.Change, []schemas.DeadLetter) {
	providers := map[string]string{"gmail.com": "google", "outlook.com": "microsoft", "yahoo.com": "yahoo"}
	var rows []pipeline.Row
	offset := int64(0)
	add := func(account, event, typ, email, ts, id, msg string, cats []string, b *enrich.Result) *pipeline.Row {
		domain := email[strings.LastIndexByte(email, '@')+1:]
		r := pipeline.Row{Event: schemas.Event{
			Topic: "events", Partition: 0, Offset: offset, AccountID: account,
			Event: schemas.EventType(event), Type: typ, Email: email, EmailNorm: email, Domain: domain,
			AddressValid: true, Timestamp: at(ts), SGEventID: id, SGMessageID: msg, Categories: cats,
		}, Provider: providers[domain], Bounce: b}
		if b != nil {
			r.Reason, r.Status = "diagnostic text of "+id, "5.0.0"
		}
		offset++
		rows = append(rows, r)
		return &rows[len(rows)-1]
	}
	res := func(bt enrich.BounceType, c enrich.Classification, reason string) *enrich.Result {
		return &enrich.Result{BounceType: bt, Classification: c, Reason: enrich.Reason(reason), Rule: "test." + reason}
	}
	grey := res(enrich.Soft, enrich.FrequencyOrVolume, "greylisted")
	unknown := res(enrich.Hard, enrich.InvalidAddress, "user_unknown")
	blocked := res(enrich.Soft, enrich.Reputation, "ip_blocked")
	full := res(enrich.Soft, enrich.MailboxUnavailable, "mailbox_full")
	nl, promo := []string{"newsletter"}, []string{"newsletter", "promo"}

	add("acme", "processed", "", "a@gmail.com", "2026-11-24 10:00:00", "p1", "msg1", nl, nil)
	add("acme", "deferred", "", "a@gmail.com", "2026-11-24 10:00:05", "d1", "msg1", nl, grey)
	add("acme", "deferred", "", "a@gmail.com", "2026-11-24 10:05:00", "d2", "msg1", nl, grey)
	add("acme", "delivered", "", "a@gmail.com", "2026-11-24 10:10:00", "v1", "msg1", nl, nil)
	add("acme", "open", "", "a@gmail.com", "2026-11-24 11:10:00", "o1", "msg1", nl, nil)
	add("acme", "open", "", "a@gmail.com", "2026-11-24 12:00:00", "o2", "msg1", nl, nil)
	add("acme", "delivered", "", "a@gmail.com", "2026-11-24 10:10:00", "v1", "msg1", nl, nil) // producer resend
	add("acme", "processed", "", "b@gmail.com", "2026-11-24 10:00:00", "p2", "msg2", promo, nil)
	add("acme", "bounce", "bounce", "b@gmail.com", "2026-11-24 10:01:00", "b2", "msg2", promo, unknown)
	add("acme", "processed", "", "c@outlook.com", "2026-11-25 09:00:00", "p3", "msg3", []string{"receipts"}, nil)
	add("acme", "delivered", "", "c@outlook.com", "2026-11-25 09:00:30", "v3", "msg3", []string{"receipts"}, nil)
	add("acme", "open", "", "c@outlook.com", "2026-11-25 09:02:30", "o3", "msg3", []string{"receipts"}, nil)
	add("acme", "processed", "", "d@outlook.com", "2026-11-25 09:00:00", "p4", "msg4", []string{"promo"}, nil)
	add("acme", "bounce", "blocked", "d@outlook.com", "2026-11-25 09:01:00", "b4", "msg4", []string{"promo"}, blocked)
	add("acme", "processed", "", "e@yahoo.com", "2026-11-26 08:00:00", "p5", "msg5", nl, nil)
	add("acme", "deferred", "", "e@yahoo.com", "2026-11-26 08:00:10", "d5", "msg5", nl, full)
	add("acme", "delivered", "", "e@yahoo.com", "2026-11-26 08:30:00", "v5", "msg5", nl, nil)
	add("acme", "processed", "", "f@corp.example", "2026-11-26 12:00:00", "p6", "msg6", nil, nil)
	add("acme", "bounce", "blocked", "f@corp.example", "2026-11-26 12:00:30", "b6", "msg6", nil, blocked)
	p7 := add("acme", "processed", "", "b@gmail.com", "2026-11-26 13:00:00", "p7", "msg7", nl, nil)
	drop := *p7 // bouncer's derived drop beside p7, as pipeline.Handler makes it
	drop.Event.Event, drop.Reason, drop.Derived = schemas.EventDropped, "Bounced Address", true
	drop.Index |= pipeline.DerivedIndexBit
	drop.SGEventID, drop.EventIDDerived = pipeline.DerivedEventID("dropped", "p7"), true
	rows = append(rows, drop)
	add("acme", "processed", "", "g@gmail.com", "2026-11-16 10:00:00", "p8", "msg8", nl, nil)
	add("acme", "bounce", "bounce", "g@gmail.com", "2026-11-16 10:00:30", "b8", "msg8", nl, unknown)
	add("acme", "processed", "", "c2@outlook.com", "2026-11-25 10:00:00", "p10", "msg10", nil, nil)
	add("acme", "delivered", "", "c2@outlook.com", "2026-11-25 10:00:20", "v10", "msg10", nil, nil)
	add("acme", "processed", "", "i@outlook.com", "2026-11-26 14:00:00", "p11", "msg11", nil, nil)
	add("acme", "bounce", "blocked", "i@outlook.com", "2026-11-26 14:00:40", "b11", "msg11", nil, blocked)
	add("acme", "processed", "", "a@gmail.com", "2026-11-24 10:00:00", "p1", "msg1", nl, nil) // producer resend
	// Another account: every query filters it out.
	add("globex", "processed", "", "z@gmail.com", "2026-11-24 10:00:00", "gx1", "gmsg1", nl, nil)
	add("globex", "bounce", "bounce", "z@gmail.com", "2026-11-24 10:01:00", "gx2", "gmsg1", nl, unknown)
	add("globex", "bounce", "blocked", "y@outlook.com", "2026-11-24 10:02:00", "gx3", "gmsg2", nl, blocked)

	sup := func(account, list string, group int64, email, ts string, deleted bool, source, code string) suppression.Change {
		return suppression.Change{AccountID: account, List: list, GroupID: group, EmailNorm: email, Email: email,
			At: time.Unix(at(ts), 0).UTC(), Reason: "test", ReasonCode: code, Deleted: deleted, Source: source}
	}
	sups := []suppression.Change{
		sup("acme", suppression.ListBounces, 0, "b@gmail.com", "2026-11-24 10:01:00", false, "event:b2", "user_unknown"),
		sup("acme", suppression.ListBounces, 0, "b@gmail.com", "2026-11-24 10:01:00", false, "event:b2", "user_unknown"),
		sup("acme", suppression.ListBounces, 0, "g@gmail.com", "2026-11-16 10:00:30", false, "event:b8", "user_unknown"),
		sup("acme", suppression.ListBounces, 0, "g@gmail.com", "2026-11-25 12:00:00", true, "api", ""),
		sup("acme", suppression.ListBlocks, 0, "d@outlook.com", "2026-11-25 09:01:00", false, "event:b4", "ip_blocked"),
		sup("acme", suppression.ListBlocks, 0, "f@corp.example", "2026-11-26 12:00:30", false, "event:b6", "ip_blocked"),
		sup("acme", suppression.ListBlocks, 0, "i@outlook.com", "2026-11-26 14:00:40", false, "event:b11", "ip_blocked"),
		sup("acme", suppression.ListBounces, 0, "e@yahoo.com", "2026-11-26 20:00:00", false, "policy:mailbox_full", "mailbox_full"),
		sup("acme", suppression.ListUnsubscribes, 7, "h@gmail.com", "2026-11-25 15:00:00", false, "event:u1", ""),
		sup("acme", suppression.ListSpamReports, 0, "j@gmail.com", "2026-11-26 10:00:00", true, "api", ""),
		sup("acme", suppression.ListSpamReports, 0, "j@gmail.com", "2026-11-26 10:00:00", false, "event:s1", ""),
		sup("globex", suppression.ListBounces, 0, "z@gmail.com", "2026-11-24 10:01:00", false, "event:gx2", "user_unknown"),
	}
	dls := []schemas.DeadLetter{
		{Topic: "events", Partition: 0, Offset: 100, Index: -1, Code: schemas.CodeInvalidJSON, Detail: "not JSON", Raw: []byte("{"), Key: []byte("k")},
		{Topic: "events", Partition: 0, Offset: 100, Index: -1, Code: schemas.CodeInvalidJSON, Detail: "not JSON", Raw: []byte("{"), Key: []byte("k")},
		{Topic: "events", Partition: 0, Offset: 101, Index: -1, Code: schemas.CodeInvalidJSON, Detail: "not JSON", Raw: []byte("]")},
		{Topic: "events", Partition: 1, Offset: 102, Index: 1, Code: schemas.CodeNonUTF8, Detail: "email", Raw: []byte("\"\xff\"")},
	}
	return rows, sups, dls
}

// analyticsQueries returns the ```sql blocks of docs/analytics.md.
func analyticsQueries(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(analyticsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sql\\s*\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		out = append(out, strings.TrimRight(strings.TrimSpace(m[1]), ";"))
	}
	if len(out) < 10 {
		t.Fatalf("%s has %d sql blocks, want at least 10", analyticsDoc, len(out))
	}
	if len(out) != len(analyticsWant) {
		t.Fatalf("%s has %d sql blocks, the test expects results for %d: add the expected rows to analyticsWant", analyticsDoc, len(out), len(analyticsWant))
	}
	return out
}

// renderValue writes v as ClickHouse's TabSeparated format does.
func renderValue(v any, dbType string) string {
	switch x := v.(type) {
	case time.Time:
		if dbType == "Date" {
			return x.UTC().Format("2006-01-02")
		}
		return x.UTC().Format("2006-01-02 15:04:05")
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case string:
		r := strings.NewReplacer("\\", "\\\\", "\t", "\\t", "\n", "\\n")
		return r.Replace(x)
	}
	return fmt.Sprint(v)
}

// queryRows runs sql and returns every row's values, and the column types.
func queryRows(ctx context.Context, s *Store, sql string) ([][]any, []string, error) {
	rows, err := s.Conn().Query(ctx, sql)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cols := rows.ColumnTypes()
	types := make([]string, len(cols))
	for i, c := range cols {
		types[i] = c.DatabaseTypeName()
	}
	var out [][]any
	for rows.Next() {
		ptrs := make([]any, len(cols))
		for i, c := range cols {
			ptrs[i] = reflect.New(c.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		vals := make([]any, len(ptrs))
		for i, p := range ptrs {
			vals[i] = reflect.ValueOf(p).Elem().Interface()
		}
		out = append(out, vals)
	}
	return out, types, rows.Err()
}

// TestAnalytics loads analyticsData and checks every example query of
// docs/analytics.md against analyticsWant on the ClickHouse of
// CLICKHOUSE_ADDR (18.16), then on the current engine through chdb.
func TestAnalytics(t *testing.T) {
	queries := analyticsQueries(t)
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{Addr: []string{addr}, Database: db}
	if _, err := Migrate(ctx, cfg); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events, sups, dls := analyticsData()
	if err := s.WriteEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSuppressions(ctx, sups); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteDeadLetters(ctx, dls); err != nil {
		t.Fatal(err)
	}

	for i, q := range queries {
		t.Run(fmt.Sprintf("server/q%02d", i+1), func(t *testing.T) {
			rows, types, err := queryRows(ctx, s, q)
			if err != nil {
				t.Fatalf("%v\n%s", err, q)
			}
			var got []string
			for _, r := range rows {
				cells := make([]string, len(r))
				for j, v := range r {
					cells[j] = renderValue(v, types[j])
				}
				got = append(got, strings.Join(cells, "\t"))
			}
			if strings.Join(got, "\n") != strings.Join(analyticsWant[i], "\n") {
				t.Errorf("query %d:\n%s\ngot:\n%s\nwant:\n%s", i+1, q, strings.Join(got, "\n"), strings.Join(analyticsWant[i], "\n"))
			}
		})
	}

	t.Run("chdb", func(t *testing.T) { analyticsOnChdb(t, ctx, s, queries) })
}

// analyticsOnChdb runs the DDL, the dataset (as stored on the server,
// rendered as INSERT ... VALUES) and each query on the current ClickHouse
// engine of chdb (scripts/chdb-check). Each query runs once as it is and
// once wrapped so that a result other than analyticsWant fails with the
// result in the error message.
func analyticsOnChdb(t *testing.T, ctx context.Context, s *Store, queries []string) {
	stmts := ddlStatements(t)
	for _, table := range []string{"events", "suppressions", "dead_letters"} {
		rows, _, err := queryRows(ctx, s, "SELECT * FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		var values []string
		for _, r := range rows {
			lits := make([]string, len(r))
			for j, v := range r {
				if lits[j], err = literal(v); err != nil {
					t.Fatalf("%s: %v", table, err)
				}
			}
			values = append(values, "("+strings.Join(lits, ", ")+")")
		}
		stmts = append(stmts, checkStatement{Name: "dataset " + table, Kind: "ddl",
			SQL: "INSERT INTO " + table + " VALUES " + strings.Join(values, ", ")})
	}
	for i, q := range queries {
		want := ""
		for _, r := range analyticsWant[i] {
			want += r + "\n"
		}
		stmts = append(stmts,
			checkStatement{Name: fmt.Sprintf("analytics q%02d", i+1), Kind: "query", SQL: q},
			checkStatement{Name: fmt.Sprintf("analytics q%02d result", i+1), Kind: "query",
				SQL: "SELECT toUInt8(if(x = " + quoteString(want) + ", '1', concat('RESULT DIFFERS, got: ', x))) FROM " +
					"(SELECT arrayStringConcat(groupArray(formatRow('TabSeparated', *)), '') AS x FROM (" + q + "))"})
	}
	runChdbCheck(t, ctx, stmts)
}
