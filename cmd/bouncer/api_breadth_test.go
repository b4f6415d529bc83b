package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

// Tenancy attempts on the routes of SendGrid's category, advanced stats and
// activity download endpoints (issue 20): account globex tries to read
// acme's categories (acme-cat is among the leaks).
func init() {
	e := tenancyExercises
	e["GET /v3/categories"] = tries(
		tenancyAttempt{"GET", "/v3/categories?limit=500", ""},
		tenancyAttempt{"GET", "/v3/categories?category=acme&account_id=acme", ""})
	e["GET /v3/categories/stats/sums"] = tries(
		tenancyAttempt{"GET", "/v3/categories/stats/sums?start_date=2025-11-01&end_date=2025-11-30&limit=500", ""},
		tenancyAttempt{"GET", "/v3/categories/stats/sums?start_date=2025-11-01&end_date=2025-11-30&on-behalf-of=acme", ""})
	for _, p := range []string{"/v3/browsers/stats", "/v3/clients/stats", "/v3/clients/{client_type}/stats", "/v3/devices/stats", "/v3/geo/stats"} {
		path := strings.Replace(p, "{client_type}", "webmail", 1) + "?start_date=2025-11-01&end_date=2025-11-30&account_id=acme"
		e["GET "+p] = tries(tenancyAttempt{"GET", path, ""})
	}
	e["GET /v3/geo/stats"] = tries(tenancyAttempt{"GET", "/v3/geo/stats?start_date=2025-11-01&end_date=2025-11-30&country=US", ""})
	// (A route of issue 25 that had no attempts: acme's bounce text, "user
	// unknown", is among the leaks.)
	if e["GET /bouncer/v1/classify/unmatched"] == nil {
		e["GET /bouncer/v1/classify/unmatched"] = tries(tenancyAttempt{"GET", "/bouncer/v1/classify/unmatched?start_date=2025-11-01&end_date=2025-11-30&account_id=acme", ""})
	}
	// globex asks for a CSV of acme's message and reads acme's download
	// ids (none it can know; a made-up one is 404).
	e["POST /v3/messages/download"] = tries(tenancyAttempt{"POST", "/v3/messages/download?query=" + url.QueryEscape(`msg_id="acme-msg-1"`), ""})
	e["GET /v3/messages/download/{download_uuid}"] = tries(tenancyAttempt{"GET", "/v3/messages/download/00000000-0000-0000-0000-000000000000", ""})
}

// downloadEnv migrates a fresh database and returns the environment of a
// bouncer api on it, and its store.
func downloadEnv(t testing.TB) (map[string]string, *clickhouse.Store) {
	t.Helper()
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_ADDR": "127.0.0.1:0"}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	st, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return env, st
}

// downloadCSV asks a running api for a download of query, waits for it
// and fetches its file through the presigned link (no key).
func downloadCSV(t testing.TB, base, key, query string) (string, map[string]any) {
	t.Helper()
	var b strings.Builder
	ready := downloadTo(t, base, key, query, &b)
	return b.String(), ready
}

// downloadTo is downloadCSV writing the file to out.
func downloadTo(t testing.TB, base, key, query string, out io.Writer) map[string]any {
	t.Helper()
	call := func(method, path string) (int, []byte) {
		req, _ := http.NewRequest(method, path, nil)
		if key != "" && strings.HasPrefix(path, base+"/v3/") {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := call("POST", base+"/v3/messages/download?query="+url.QueryEscape(query))
	var started struct {
		ID string `json:"download_uuid"`
	}
	if code != 202 || json.Unmarshal(body, &started) != nil {
		t.Fatalf("POST /v3/messages/download: %d %s", code, body)
	}
	var ready map[string]any
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		code, body = call("GET", base+"/v3/messages/download/"+started.ID)
		if code == 200 && json.Unmarshal(body, &ready) == nil {
			break
		}
		if code != 202 || time.Now().After(deadline) {
			t.Fatalf("GET /v3/messages/download/%s: %d %s", started.ID, code, body)
		}
	}
	link, _ := ready["presigned_url"].(string)
	if !strings.HasPrefix(link, base+"/bouncer/v1/messages/download/"+started.ID+"/file?") {
		t.Fatalf("presigned_url %q", link)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %.300s", link, resp.StatusCode, b)
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		t.Fatal(err)
	}
	return ready
}

// TestActivityDownloadThroughAPI: a real bouncer api on real ClickHouse
// writes the CSV of an activity query in the background; the presigned
// link gives exactly the account's matching events of the last 30 days,
// escaped by the shared CSV writer.
func TestActivityDownloadThroughAPI(t *testing.T) {
	env, st := downloadEnv(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	ev := func(acct, id, msg string, event schemas.EventType, email string, at time.Time) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Offset: int64(len(id)), AccountID: acct, Event: event, SGEventID: id, SGMessageID: msg,
			Email: email, EmailNorm: strings.ToLower(email), Domain: "example.com", Timestamp: at.Unix(), Categories: []string{"news"}}}
	}
	rows := []pipeline.Row{
		ev("acme", "e1", "m1", "processed", "ann@example.com", now.Add(-3*time.Hour)),
		ev("acme", "e2", "m1", "delivered", "ann@example.com", now.Add(-2*time.Hour)),
		ev("acme", "e3", "m2", "bounce", "=HYPERLINK(1)@example.com", now.Add(-time.Hour)),
		ev("acme", "e4", "m3", "delivered", "old@example.com", now.Add(-40*24*time.Hour)), // older than 30 days
		ev("globex", "g1", "m1", "delivered", "other@example.com", now.Add(-time.Hour)),   // another account, same message id
	}
	rows = append(rows, rows[1]) // a producer's resend
	for i := range rows {
		rows[i].Offset = int64(i)
	}
	if err := st.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	key := createKey(t, env, "acme")
	base := startAPI(t, env, "--check=false", "--publish-changes=false", "--webhook-claims=false", "--rate-limit", "1000", "--bounce-purge-interval", "0")

	body, ready := downloadCSV(t, base, key, "")
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != strings.Join(analytics.ExportColumns, ",") || len(recs) != 4 || ready["rows"] != float64(3) {
		t.Fatalf("every message: %d rows (%v)\n%s", len(recs)-1, ready, body)
	}
	if recs[1][15] != "e3" || recs[1][3] != "'=HYPERLINK(1)@example.com" || recs[2][15] != "e2" || recs[3][15] != "e1" || recs[3][0] != now.Add(-3*time.Hour).Format("2006-01-02 15:04:05") {
		t.Errorf("newest first, escaped:\n%s", body)
	}
	body, _ = downloadCSV(t, base, key, `msg_id="m1"`)
	if recs, _ := csv.NewReader(strings.NewReader(body)).ReadAll(); len(recs) != 3 || recs[1][15] != "e2" || recs[2][15] != "e1" {
		t.Errorf("msg_id m1 (not globex's):\n%s", body)
	}
}

// BenchmarkActivityDownload has ClickHouse generate BOUNCER_BENCH_EVENTS
// events (default 1,000,000) of one account in the last day, asks a
// bouncer api running in this process for their CSV, and reports how long
// it took to be ready, its size, and the most heap the process held while
// it was written and fetched (sampled every 20 ms):
//
//	BOUNCER_BENCH_EVENTS=1000000 go test -run '^$' -bench ActivityDownload -benchtime 1x ./cmd/bouncer/
func BenchmarkActivityDownload(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("BOUNCER_BENCH_EVENTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	env, _ := downloadEnv(b)
	conn, err := ch.Open(&ch.Options{Addr: []string{env["CLICKHOUSE_ADDR"]}, Auth: ch.Auth{Database: env["CLICKHOUSE_DATABASE"]}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	now := time.Now().Unix()
	err = conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO events (ingest_date, ingested_at, kafka_topic, kafka_partition, kafka_offset, account_id, event, timestamp, "+
		"email, email_norm, sg_event_id, sg_message_id, from_email, subject, categories, reason, useragent, ip) "+
		"SELECT today(), now(), 'bench', 0, number, 'bench', ['processed', 'delivered', 'open', 'click'][number %% 4 + 1], toDateTime(%d - number %% 86400), "+
		"concat('user', toString(number %% 100000), '@example.com'), concat('user', toString(number %% 100000), '@example.com'), "+
		"concat('ev', toString(number)), concat('msg', toString(intDiv(number, 4))), 'news@acme.example', 'Your weekly news, issue 42', ['news'], "+
		"'', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36', '203.0.113.7' "+
		"FROM numbers(%d)", now, n))
	if err != nil {
		b.Fatal(err)
	}
	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "keys", "create", "--account", "bench"}, envFunc(env), strings.NewReader(""), &out, io.Discard); err != nil {
		b.Fatal(err)
	}
	key := keyLine.FindString(out.String())
	base := startAPIBench(b, env)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	b.ResetTimer()
	var size countWriter
	start := time.Now()
	ready := downloadTo(b, base, key, "", &size)
	took := time.Since(start)
	b.StopTimer()
	close(stop)
	b.ReportMetric(ready["rows"].(float64), "rows")
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(took.Seconds(), "s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// startAPIBench runs bouncer api in this process until b ends and returns
// its URL.
func startAPIBench(b *testing.B, env map[string]string) string {
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bouncer", "api", "--check=false", "--publish-changes=false", "--webhook-claims=false", "--bounce-purge-interval", "0"},
			envFunc(env), strings.NewReader(""), logs, logs)
	}()
	b.Cleanup(func() { cancel(); <-done })
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			return "http://" + m[1]
		}
	}
	b.Fatalf("api not listening:\n%s", logs.String())
	return ""
}
