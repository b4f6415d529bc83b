package suppression_test

// Integration tests of the service on real ClickHouse (and Kafka for the
// change log): delete-all and erasure.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

// httpDo makes a request with key and a body of contentType.
func httpDo(t *testing.T, method, url, key, contentType, body string) (int, string) {
	t.Helper()
	if contentType != "" {
		method += "\x00" + contentType
	}
	code, got, _ := apitest.Call(t, url, key, method, "", body)
	return code, got
}

type recordedChanges struct{ got []suppression.Change }

func (r *recordedChanges) PublishChanges(_ context.Context, rows []suppression.Change) error {
	r.got = append(r.got, rows...)
	return nil
}

// TestDeleteAllPublishesRemovals: delete_all with a change log removes each
// entry like a single delete, so the removals reach the workers' indexes;
// another account's entry stays.
func TestDeleteAllPublishesRemovals(t *testing.T) {
	addr := testenv.ClickHouse(t)
	st := apitest.Store(t, clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(t, addr)})
	t0 := time.Unix(1764201600, 0)
	var adds []suppression.Change
	for _, e := range []string{"a@x.org", "b@x.org", "c@x.org"} {
		adds = append(adds, suppression.Change{AccountID: "acme", List: "bounces", EmailNorm: e, Email: e, At: t0})
	}
	adds = append(adds, suppression.Change{AccountID: "globex", List: "bounces", EmailNorm: "a@x.org", Email: "a@x.org", At: t0})
	if err := st.WriteSuppressions(context.Background(), adds); err != nil {
		t.Fatal(err)
	}
	rec := &recordedChanges{}
	as := suppression.NewService(st, rec, nil)
	if err := as.DeleteAllSuppressions(context.Background(), "acme", "bounces", 0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 3 {
		t.Fatalf("published %d removals, want 3: %+v", len(rec.got), rec.got)
	}
	for _, c := range rec.got {
		if !c.Deleted || c.AccountID != "acme" || c.List != "bounces" {
			t.Errorf("published %+v, want an acme bounces removal", c)
		}
	}
	left, err := as.Suppressions(context.Background(), "acme", suppression.Query{List: "bounces", Limit: 500})
	if err != nil || len(left) != 0 {
		t.Fatalf("acme's bounces after delete_all: %v, %v", left, err)
	}
	if other, _ := as.Suppressions(context.Background(), "globex", suppression.Query{List: "bounces", Limit: 500}); len(other) != 1 {
		t.Errorf("globex's entry was touched: %v", other)
	}
}

// TestErase runs the API with the change log on real Kafka and ClickHouse,
// puts an address on acme's lists (through the API, so the batch check's
// index, which follows the change log, has it) and in its events, history
// and dead letters, erases it with POST /bouncer/v1/privacy/erasures, and
// checks every table, the batch check and the record. (bouncer erase, the
// command, is tested in cmd/bouncer.)
func TestErase(t *testing.T) {
	brokers := testenv.Kafka(t)
	changelog := testenv.Topic(t, brokers, 2)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	changes, err := consumer.OpenChangeLog(ctx, conn, changelog, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { changes.Close() })
	index, err := consumer.LoadIndex(ctx, conn, changelog, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil || index == nil {
		t.Fatalf("load the index: %v", err)
	}
	a := apitest.Start(t, apitest.Options{Changes: changes, Checker: index})
	st, base, keyA, keyB := a.Store, a.URL, a.KeyA, a.KeyB

	const kim, lee = "kim@example.com", "lee@example.com"
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for _, acct := range []string{"acme", "globex"} {
		var rows []pipeline.Row
		for i, e := range []string{kim, lee} {
			rows = append(rows, pipeline.Row{Event: schemas.Event{Topic: "t-" + acct, Offset: int64(i), Event: "delivered", AccountID: acct,
				SGEventID: acct + e, Email: strings.ToUpper(e[:1]) + e[1:], EmailNorm: e, Domain: "example.com", Timestamp: t0.Unix()}})
		}
		if err := st.WriteEvents(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := st.WriteHistory(ctx, []pipeline.HistoryEvent{{AccountID: acct, EmailNorm: kim, Event: "delivered", Timestamp: t0.Unix()}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.WriteDeadLetters(ctx, []schemas.DeadLetter{{Topic: "t", Index: -1, Code: "bad_json", Raw: []byte(`{"account_id":"acme","email":"Kim@Example.com",`)}}); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{keyA, keyB} {
		if code, body := httpDo(t, "POST", base+"/v3/asm/suppressions/global", key, "application/json", `{"recipient_emails":["Kim@Example.com"]}`); code != 201 {
			t.Fatalf("global unsubscribe: %d %s", code, body)
		}
	}
	if code, body := httpDo(t, "POST", base+"/bouncer/v1/suppressions/bounces/import", keyA, "text/csv", "email,created,status,reason\nkim@example.com,1764201600,5.1.1,550 5.1.1 user unknown\n"); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	suppressed := func(key string) (bool, string) {
		code, body := httpDo(t, "POST", base+"/bouncer/v1/suppressions/check", key, "application/json", `{"emails":["kim@example.com"]}`)
		return code == 200 && strings.Contains(body, `"suppressed":true`), fmt.Sprint(code, body)
	}
	apitest.WaitFor(t, "the batch check sees kim on acme's lists", 20*time.Second, func() (bool, string) { return suppressed(keyA) })

	code, body := httpDo(t, "POST", base+"/bouncer/v1/privacy/erasures", keyA, "application/json", `{"email":" KIM@example.com"}`)
	if code != 201 {
		t.Fatalf("erase: %d %s", code, body)
	}
	var rec struct {
		ID          string `json:"id"`
		EmailSHA256 string `json:"email_sha256"`
		RequestedBy string `json:"requested_by"`
		Tables      []struct {
			Table string `json:"table"`
			Rows  uint64 `json:"rows"`
		} `json:"tables"`
		RowsRemoved uint64 `json:"rows_removed"`
	}
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	removed := map[string]uint64{}
	for _, tb := range rec.Tables {
		removed[tb.Table] = tb.Rows
	}
	if removed["events"] != 1 || removed["suppressions"] != 2 || removed["recipient_history"] != 1 || removed["dead_letters"] != 1 ||
		rec.EmailSHA256 != suppression.EmailSHA256(kim) || rec.RequestedBy != "key:"+strings.Split(keyA, ".")[1] || rec.RowsRemoved != 5 {
		t.Errorf("erasure record %s", body)
	}
	for _, c := range []struct {
		sql  string
		want uint64
	}{
		{"SELECT count() FROM events WHERE account_id = 'acme' AND email_norm = 'kim@example.com'", 0},
		{"SELECT count() FROM events WHERE account_id = 'acme'", 1},
		{"SELECT count() FROM events WHERE account_id = 'globex'", 2},
		{"SELECT count() FROM suppressions WHERE account_id = 'acme' AND email_norm = 'kim@example.com'", 0},
		{"SELECT count() FROM suppressions WHERE account_id = 'globex'", 1},
		{"SELECT count() FROM recipient_history WHERE account_id = 'acme'", 0},
		{"SELECT count() FROM recipient_history WHERE account_id = 'globex'", 1},
		{"SELECT count() FROM dead_letters", 0},
		{"SELECT count() FROM erasures WHERE positionCaseInsensitive(concat(email_sha256, requested_by, erasure_id), 'kim') > 0", 0},
	} {
		var n uint64
		if err := st.Conn().QueryRow(ctx, c.sql).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s: %d (%v), want %d", c.sql, n, err, c.want)
		}
	}
	apitest.WaitFor(t, "the batch check drops kim for acme (the removal went through the change log)", 20*time.Second, func() (bool, string) {
		s, why := suppressed(keyA)
		return !s, why
	})
	if s, why := suppressed(keyB); !s {
		t.Errorf("globex's own unsubscribe of kim is gone after acme's erasure: %s", why)
	}
	if code, body := httpDo(t, "GET", base+"/v3/suppression/unsubscribes", keyA, "", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("acme's unsubscribes after the erasure: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", base+"/bouncer/v1/privacy/erasures", keyA, "", "")
	if code != 200 || !strings.Contains(body, rec.ID) || !strings.Contains(body, suppression.EmailSHA256(kim)) {
		t.Errorf("erasure records: %d %s", code, body)
	}
	if code, body := httpDo(t, "GET", base+"/bouncer/v1/privacy/erasures", keyB, "", ""); code != 200 || strings.TrimSpace(body) != `{"result":[]}` {
		t.Errorf("globex's erasure records: %d %s", code, body)
	}
}
