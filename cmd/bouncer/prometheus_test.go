package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	promrules "github.com/bouncer-mail/bouncer/deploy/prometheus"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/forward/smtptest"
)

// promSeries are the series the rules and dashboards read, with the labels
// each must carry (besides job and instance, and le of histogram buckets).
// TestPrometheus fails when a rule or a dashboard names a bouncer_ metric
// missing here, or when a running worker or api does not export one with
// exactly these labels.
var promSeries = map[string][]string{
	"bouncer_consumer_lag_messages":                  {"group", "topic", "partition"},
	"bouncer_consumer_last_commit_timestamp_seconds": {"group", "topic", "partition"},
	"bouncer_consumer_batch_retries_total":           {"group"},
	"bouncer_consumer_commit_errors_total":           {"group"},
	"bouncer_consumer_assigned_partitions":           {"group"},
	"bouncer_sink_messages_consumed_total":           {},
	"bouncer_sink_events_written_total":              {},
	"bouncer_sink_dead_letters_total":                {"reason"},
	"bouncer_sink_insert_errors_total":               {},
	"bouncer_sink_insert_seconds_bucket":             {},
	"bouncer_suppression_index_lag_messages":         {"partition"},
	"bouncer_webhook_deliveries_total":               {"result"},
	"bouncer_webhook_queued_events":                  {},
	"bouncer_webhook_retry_tier_lag":                 {"tier"},
	"bouncer_webhook_parked_oldest_age_seconds":      {"tier"},
	"bouncer_webhook_parked_overdue_seconds":         {"tier"},
	"bouncer_webhook_circuits":                       {"state"},
	"bouncer_webhook_endpoints":                      {"state"},
	"bouncer_webhook_endpoints_disabled_total":       {"reason"},
	"bouncer_webhook_park_errors_total":              {},
	"bouncer_webhook_end_to_end_seconds_bucket":      {},
	"bouncer_webhook_attempt_seconds_bucket":         {},
	"bouncer_forward_emails_total":                   {"kind", "result"},
	"bouncer_forward_bounces_total":                  {"outcome"},
	"bouncer_api_requests_total":                     {"method", "route", "code"},
	"bouncer_api_request_duration_seconds_bucket":    {"method", "route"},
	"bouncer_api_requests_in_flight":                 {},
}

// maybeEmpty are the expressions that may rightly return nothing during
// the test's short, healthy stream.
var maybeEmpty = map[string]string{}

// TestPrometheus runs a worker (sink, webhooks, forwarding) and an api on
// the real Kafka and ClickHouse, and Debian's Prometheus scraping both with
// deploy/prometheus's rules loaded, during a short stream: events with bad
// input and bounces, webhook deliveries to a good and a failing endpoint,
// API requests. It checks both /metrics pages with promtool, that every
// series the rules and dashboards read exists with its labels, that
// Prometheus evaluates every rule without error, and that every recording
// rule and dashboard query returns data.
func TestPrometheus(t *testing.T) {
	brokers := testenv.Kafka(t)
	addr := testenv.ClickHouse(t)
	promBin := testenv.Program(t, "prometheus")
	promtool := testenv.Program(t, "promtool")
	topic := testenv.Topic(t, brokers, 2)
	db := testenv.Database(t, addr)
	key := make([]byte, 32)
	rand.Read(key)
	relay := smtptest.Start(t, smtptest.Options{TLS: "none"})
	good, failing := newHookReceiver(t, 200), newHookReceiver(t, 503)
	env := map[string]string{
		"KAFKA_BROKERS": brokers, "CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db,
		"BOUNCER_TOPIC": topic, "BOUNCER_SINK_GROUP": topic + ".sink", "BOUNCER_OPS_ADDR": "127.0.0.1:0",
		"BOUNCER_MAX_WAIT": "50ms", "BOUNCER_CHANGELOG_TOPIC": topic + ".suppressions", "BOUNCER_PARTITIONS": "2",
		"BOUNCER_SECRET_KEY": base64.StdEncoding.EncodeToString(key), "BOUNCER_WEBHOOK_ALLOW_NETS": allowOnly(t, good.url, failing.url),
		// A failing endpoint's batch goes to the 1s tier, then waits in the 1h one.
		"BOUNCER_WEBHOOK_RETRY_SCHEDULE": "1s,1h", "BOUNCER_WEBHOOK_TOPIC_PREFIX": topic + ".wh",
		"BOUNCER_WEBHOOK_GROUP": topic + ".webhooks", "BOUNCER_WEBHOOK_REFRESH": "200ms", "BOUNCER_WEBHOOK_TIMEOUT": "2s",
		"BOUNCER_WEBHOOK_BATCH_WAIT": "50ms",
		"BOUNCER_SMTP_RELAY":         relay.Addr, "BOUNCER_SMTP_TLS": "none", "BOUNCER_FORWARD_FROM": "bounces@bouncer.example",
		"BOUNCER_FORWARD_GROUP": topic + ".forward",
		"BOUNCER_API_ADDR":      "127.0.0.1:0", "BOUNCER_API_OPS_ADDR": "127.0.0.1:0", "BOUNCER_API_RATE_LIMIT": "10000",
	}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}

	// The api, and its two listeners.
	apiKey, globexKey := createKey(t, env, "acme"), createKey(t, env, "globex")
	apiLogs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- run(ctx, []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), apiLogs, apiLogs)
	}()
	t.Cleanup(func() {
		cancel()
		select { // logged may have taken its result already
		case <-apiDone:
		case <-time.After(30 * time.Second):
		}
	})
	apiBase := "http://" + logged(t, apiLogs, apiDone, `msg="api listening" addr=(\S+)`)
	apiOps := logged(t, apiLogs, apiDone, `msg="ops server listening" addr=(\S+)`)
	if strings.TrimPrefix(apiBase, "http://") == apiOps {
		t.Fatalf("the api serves its ops port on its own listener %s", apiOps)
	}
	call := func(key string, want int, method, path, body string) string {
		t.Helper()
		req, _ := http.NewRequest(method, apiBase+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s; want %d", method, path, resp.StatusCode, b, want)
		}
		return string(b)
	}
	apiCall := func(want int, method, path, body string) string {
		t.Helper()
		return call(apiKey, want, method, path, body)
	}
	// Metrics are not on the tenant-facing listener.
	apiCall(404, "GET", "/metrics", "")

	for _, rc := range []*hookReceiver{good, failing} {
		apiCall(201, "POST", "/v3/user/webhooks/event/settings",
			`{"enabled":true,"url":"`+rc.url+`","processed":true,"delivered":true,"bounce":true,"dropped":true}`)
	}
	apiCall(200, "PATCH", "/v3/mail_settings/forward_bounce", `{"enabled":true,"email":"ops@acme.example"}`)
	// globex forwards to an address the relay refuses: a forwarding
	// failure, and BouncerForwardingFailures (no "for") fires for real.
	relay.Reject("ops@globex.example")
	call(globexKey, 200, "PATCH", "/v3/mail_settings/forward_bounce", `{"enabled":true,"email":"ops@globex.example"}`)

	stopWorker, workerLogs := startWorker(t, env)
	defer stopWorker()
	workerOps := logged(t, workerLogs, nil, `msg="ops server listening" addr=(\S+)`)

	// Prometheus, scraping both every second, with the rules loaded.
	rulesDir, err := filepath.Abs("../../deploy/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	promAddr := freeLoopback(t)
	var files []string
	for _, f := range promrules.RuleFiles {
		files = append(files, fmt.Sprintf("%q", filepath.Join(rulesDir, f)))
	}
	config := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%s]
scrape_configs:
  - job_name: bouncer-worker
    static_configs: [{targets: [%q]}]
  - job_name: bouncer-api
    static_configs: [{targets: [%q]}]
`, strings.Join(files, ", "), workerOps, apiOps)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promLog, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = promLog, promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { prom.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			prom.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	promURL := "http://" + promAddr
	waitFor(t, "prometheus ready", 60*time.Second, func() (bool, string) {
		resp, err := http.Get(promURL + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})

	// Counters must be scraped before the stream moves them, or rates see
	// no increase: wait for two scrapes of each target.
	waitFor(t, "both targets scraped twice", 60*time.Second, func() (bool, string) {
		s := promQuery(t, promURL, `count_over_time(up{job=~"bouncer-.*"}[1m]) >= 2`)
		return len(s) == 2, fmt.Sprint(len(s), " targets")
	})

	// The stream: a hard bounce (a suppression, a forwarded report), good
	// events, bad input; API reads, a miss and a refused request.
	var events [][]byte
	now := time.Now().Unix()
	for _, account := range []string{"acme", "globex"} {
		events = append(events, []byte(fmt.Sprintf(`{"event":"bounce","email":"x@example.com","timestamp":%d,"sg_event_id":"b-%s","type":"bounce","status":"5.1.1","reason":"550 5.1.1 no such user","account_id":%q,"sg_message_id":"m-x","smtp-id":"<x.1@app.example>"}`, now, account, account)))
	}
	for i := range 60 {
		events = append(events, []byte(fmt.Sprintf(`{"event":"delivered","email":"u%d@example.com","timestamp":%d,"sg_event_id":"d%02d","account_id":"acme"}`, i, now, i)))
	}
	events = append(events, []byte(`{"event":"delivered",`), []byte(`{"event":"nonsense","email":"a@b.c","timestamp":1}`))
	produceWebhookEvents(t, brokers, topic, events...)
	for range 5 {
		apiCall(200, "GET", "/v3/suppression/bounces", "")
		apiCall(200, "GET", "/v3/stats?start_date=2026-11-01", "")
		apiCall(404, "GET", "/v3/no/such/route", "")
		apiCall(200, "GET", "/healthz", "")
	}
	waitFor(t, "the good endpoint got acme's events", 60*time.Second, func() (bool, string) {
		n := len(good.got())
		return n >= 61, fmt.Sprint(n, " events")
	})
	_, ok := relay.WaitFor(60*time.Second, func(ms []smtptest.Message) bool { return len(ms) >= 1 })
	if !ok {
		t.Fatal("the bounce report was not forwarded")
	}

	// promtool's checks of both exposition pages.
	for _, target := range []string{workerOps, apiOps} {
		body := httpGet(t, "http://"+target+"/metrics")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on %s: %v\n%s", target, err, out)
		}
	}

	rules, err := promrules.Rules()
	if err != nil {
		t.Fatal(err)
	}
	dashboards := dashboardQueries(t)
	boards := map[string]bool{}
	for _, q := range dashboards {
		boards[q.dashboard] = true
	}
	if len(boards) != 3 {
		t.Errorf("dashboards with queries: %v; want the ingest, webhooks and API ones from deploy/grafana/dashboards", boards)
	}

	// Every bouncer_ metric the rules and dashboards name is one the test
	// knows the labels of.
	metricName := regexp.MustCompile(`\bbouncer_[a-z0-9_]+`)
	var exprs []string
	for _, r := range rules {
		exprs = append(exprs, r.Expr)
	}
	for _, q := range dashboards {
		exprs = append(exprs, q.expr)
	}
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(e, -1) {
			if _, ok := promSeries[name]; !ok {
				t.Errorf("%s reads %s, which TestPrometheus does not know (add it to promSeries with its labels)", e, name)
			}
		}
	}

	// Every known series is scraped, with its labels.
	waitFor(t, "every series scraped", 90*time.Second, func() (bool, string) {
		var missing []string
		for name := range promSeries {
			if len(promQuery(t, promURL, name)) == 0 {
				missing = append(missing, name)
			}
		}
		sort.Strings(missing)
		return len(missing) == 0, fmt.Sprint("missing ", missing)
	})
	for name, labels := range promSeries {
		want := append([]string{"__name__", "instance", "job"}, labels...)
		if strings.HasSuffix(name, "_bucket") {
			want = append(want, "le")
		}
		sort.Strings(want)
		for _, s := range promQuery(t, promURL, name) {
			var got []string
			for l := range s.Metric {
				got = append(got, l)
			}
			sort.Strings(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: labels %v; want %v", name, got, want)
				break
			}
		}
	}

	// What the stream did shows in the figures.
	scenario := []struct{ what, expr string }{
		{"a batch of the failing endpoint waits in the 1h tier", `bouncer_webhook_parked_oldest_age_seconds{tier="1h"} > 0`},
		{"the bad input dead-lettered", `bouncer_sink_dead_letters_total{reason="invalid_json"} >= 1`},
		{"both endpoints active", `bouncer_webhook_endpoints{state="active"} == 2`},
		{"the report forwarded", `bouncer_forward_emails_total{kind="report",result="sent"} >= 1`},
		{"a commit time per partition of each of the four groups (sink, forward, webhooks, and the webhook dead letters' .dlq)", `count(bouncer_consumer_last_commit_timestamp_seconds{topic!~".*[.]routed"}) == 8`},
		// Re-routing is on by default: the sink and webhook groups also own
		// the routed copies' topic (as many partitions as the change log,
		// which the api or the worker creates first).
		{"the sink and webhook groups own routed partitions", `count(count by (group) (bouncer_consumer_last_commit_timestamp_seconds{topic=~".*[.]routed"})) == 2`},
		{"no partition of the sink group behind", `max(bouncer_consumer_lag_messages{group=~".*[.]sink"}) == 0`},
		{"worker and api suppression indexes caught up", `count(sum by (job) (bouncer_suppression_index_lag_messages) == 0) == 2`},
		{"suppression reads counted by route pattern", `bouncer_api_requests_total{method="GET",route="/v3/suppression/bounces",code="200"} >= 5`},
		{"the misses counted as unmatched", `bouncer_api_requests_total{method="GET",route="unmatched",code="404"} >= 5`},
		{"the refused report counted", `bouncer_forward_emails_total{kind="report",result="rejected"} >= 1`},
		{"BouncerForwardingFailures firing", `ALERTS{alertname="BouncerForwardingFailures",alertstate="firing",severity="ticket"}`},
	}
	waitFor(t, "the stream's figures", 60*time.Second, func() (bool, string) {
		var not []string
		for _, c := range scenario {
			if len(promQuery(t, promURL, c.expr)) == 0 {
				not = append(not, c.what)
			}
		}
		return len(not) == 0, fmt.Sprint("not yet: ", not)
	})

	// Prometheus evaluated every rule without error.
	waitFor(t, "every rule evaluated", 60*time.Second, func() (bool, string) {
		var resp struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(httpGet(t, promURL+"/api/v1/rules")), &resp); err != nil {
			return false, err.Error()
		}
		n, bad := 0, []string{}
		for _, g := range resp.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					bad = append(bad, r.Name+": "+r.Health+" "+r.LastError)
				}
			}
		}
		return n == len(rules) && len(bad) == 0, fmt.Sprintf("%d of %d rules loaded; not ok: %v", n, len(rules), bad)
	})

	// Every recording rule and dashboard query returns data; every alert
	// evaluates (none is expected to fire on this healthy stream).
	type check struct{ what, expr string }
	var mustHaveData []check
	for _, r := range rules {
		if r.Record != "" {
			mustHaveData = append(mustHaveData, check{"record " + r.Record, r.Expr}, check{"recorded " + r.Record, r.Record})
		}
	}
	for _, q := range dashboards {
		mustHaveData = append(mustHaveData, check{"dashboard " + q.dashboard + " / " + q.panel, q.expr})
	}
	waitFor(t, "every recording rule and dashboard query returns data", 90*time.Second, func() (bool, string) {
		var empty []string
		for _, c := range mustHaveData {
			if _, ok := maybeEmpty[c.expr]; ok {
				continue
			}
			if len(promQuery(t, promURL, c.expr)) == 0 {
				empty = append(empty, c.what)
			}
		}
		return len(empty) == 0, fmt.Sprintf("no data: %v", empty)
	})
	for _, c := range mustHaveData {
		t.Logf("data %-3d %s: %s", len(promQuery(t, promURL, c.expr)), c.what, c.expr)
	}
	for _, r := range rules {
		if r.Alert != "" {
			n := len(promQuery(t, promURL, r.Expr))
			t.Logf("alert %s: evaluates, %d series over its threshold now", r.Alert, n)
		}
	}
}

// logged waits for a log line matching pattern and returns its first group;
// it fails at once when done (the command's end, if given) reports.
func logged(t *testing.T, logs *syncBuffer, done <-chan error, pattern string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	var got string
	waitFor(t, pattern, 60*time.Second, func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("stopped before logging %s: %v\n%s", pattern, err, logs.String())
		default:
		}
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			got = m[1]
			return true, ""
		}
		return false, logs.String()
	})
	return got
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", u, resp.Status, b)
	}
	return string(b)
}

type promSample struct {
	Metric map[string]string `json:"metric"`
}

// promQuery evaluates expr now; an error from Prometheus fails the test.
func promQuery(t *testing.T, base, expr string) []promSample {
	t.Helper()
	resp, err := http.PostForm(base+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	defer resp.Body.Close()
	var out struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil || out.Status != "success" {
		t.Fatalf("query %s: %s %s (%v)", expr, resp.Status, b, err)
	}
	var samples []promSample
	if out.Data.ResultType == "vector" || out.Data.ResultType == "matrix" {
		if err := json.Unmarshal(out.Data.Result, &samples); err != nil {
			t.Fatalf("query %s: %v", expr, err)
		}
		return samples
	}
	return []promSample{{}} // a scalar or a string is data
}

type dashboardQuery struct{ dashboard, panel, expr string }

// dashboardQueries reads every query of the generated Grafana dashboards.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	paths, err := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []dashboardQuery
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Title  string
			Panels []grafanaPanel
		}
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(&d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var walk func([]grafanaPanel)
		walk = func(ps []grafanaPanel) {
			for _, p := range ps {
				for _, tg := range p.Targets {
					if tg.Expr != "" {
						out = append(out, dashboardQuery{d.Title, p.Title, tg.Expr})
					}
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
	}
	return out
}

type grafanaPanel struct {
	Title   string
	Targets []struct{ Expr string }
	Panels  []grafanaPanel
}
