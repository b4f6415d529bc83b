package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
)

// hookReceiver is a loopback endpoint: it answers its first failFirst
// requests with 503, then with status, and keeps the sg_event_ids of the
// batches it accepted, by webhook-id.
type hookReceiver struct {
	status    atomic.Int32
	failFirst atomic.Int32
	mu        sync.Mutex
	accepted  map[string][]string // webhook-id -> sg_event_ids
	answers   map[string][]int    // webhook-id -> statuses
	secret    string              // whsec_..., verified when set
	badSigs   int
	url       string
	start     time.Time
	requests  []string // one line per request, logged when the test fails
}

// allowOnly is a BOUNCER_WEBHOOK_ALLOW_NETS value opening exactly the
// loopback addresses and ports of the given URLs.
func allowOnly(t *testing.T, urls ...string) string {
	t.Helper()
	var rules []string
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		ap, err := netip.ParseAddrPort(u.Host)
		if err != nil {
			t.Fatalf("allowOnly(%s): %v", raw, err)
		}
		rules = append(rules, safedial.RuleFor(ap).String())
	}
	return strings.Join(rules, ",")
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	rc := &hookReceiver{accepted: map[string][]string{}, answers: map[string][]int{}}
	rc.status.Store(int32(status))
	rc.start = time.Now()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rc}
	go srv.Serve(ln)
	rc.url = "http://" + ln.Addr().String() + "/hook"
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			rc.mu.Lock()
			t.Logf("requests to %s (seconds since it started, webhook-id, status, events):\n%s", rc.url, strings.Join(rc.requests, "\n"))
			rc.mu.Unlock()
		}
	})
	return rc
}

func (rc *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id := r.Header.Get("webhook-id")
	status := int(rc.status.Load())
	if rc.failFirst.Add(-1) >= 0 {
		status = http.StatusServiceUnavailable
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.secret != "" {
		wh, err := standardwebhooks.NewWebhook(rc.secret)
		if err != nil || wh.Verify(body, r.Header) != nil {
			rc.badSigs++
		}
	}
	rc.answers[id] = append(rc.answers[id], status)
	rc.requests = append(rc.requests, fmt.Sprintf("%7.2f %s %d %d", time.Since(rc.start).Seconds(), id, status, strings.Count(string(body), `"sg_event_id"`)))
	if status/100 == 2 {
		var evs []struct {
			ID string `json:"sg_event_id"`
		}
		json.Unmarshal(body, &evs)
		for _, e := range evs {
			rc.accepted[id] = append(rc.accepted[id], e.ID)
		}
	}
	w.WriteHeader(status)
}

// got returns the distinct sg_event_ids accepted.
func (rc *hookReceiver) got() map[string]bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]bool{}
	for _, ids := range rc.accepted {
		for _, id := range ids {
			out[id] = true
		}
	}
	return out
}

// produceWebhookEvents writes values with a transport of its own: kafka-go's
// shared default transport caches topic metadata, and a topic created after
// another test filled that cache looks unknown to it for a while.
func produceWebhookEvents(t *testing.T, brokers, topic string, values ...[]byte) {
	t.Helper()
	w, err := consumer.NewWriter(consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, consumer.WriterConfig{BatchTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// opsAPI runs `bouncer api` in-process.
type opsAPI struct {
	base string
	key  string
}

func startOpsAPI(t *testing.T, env map[string]string) *opsAPI {
	t.Helper()
	f := &opsAPI{key: createKey(t, env, "acme")}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), logs, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	waitFor(t, "api listening", 30*time.Second, func() (bool, string) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			f.base = "http://" + m[1]
			return true, ""
		}
		return false, logs.String()
	})
	return f
}

func (f *opsAPI) do(t *testing.T, want int, method, path, body string, v any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// TestWorkerDeliversWebhooks: subscriptions made through the API receive
// every event (and the derived dropped event) from `bouncer worker`, signed;
// a failing endpoint gets its batches again under the same webhook-id; a
// 410 endpoint is disabled, its batches are listed as failed and, once it
// is re-enabled, replayed through the API; the delivery log in ClickHouse
// agrees with what the receivers answered.
func TestWorkerDeliversWebhooks(t *testing.T) {
	brokers := testenv.Kafka(t)
	addr := testenv.ClickHouse(t)
	topic := testenv.Topic(t, brokers, 2)
	db := testenv.Database(t, addr)
	key := make([]byte, 32)
	rand.Read(key)
	prefix := topic + ".wh"
	good := newHookReceiver(t, 200)
	// The flaky endpoint fails its first two requests, whichever batches
	// they carry, then recovers. Counted in requests, not in time: an
	// outage "until the good endpoint has everything" lasted as long as
	// the machine was slow, and under load it outlived the retry schedule
	// (a batch failing 4 times in a row is given up) or opened the circuit
	// (5 failures in a row; it stays open --webhook-breaker-open, 30s).
	// Two failures stay clear of both: no batch is given up (the schedule
	// below allows 3 failed attempts, one is spare for an attempt timing
	// out under load) and the circuit stays closed.
	flaky := newHookReceiver(t, 200)
	flaky.failFirst.Store(2)
	gone := newHookReceiver(t, 410)
	env := map[string]string{
		"KAFKA_BROKERS": brokers, "CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db,
		"BOUNCER_TOPIC": topic, "BOUNCER_SINK_GROUP": topic + ".sink", "BOUNCER_OPS_ADDR": "127.0.0.1:0",
		"BOUNCER_MAX_WAIT": "50ms", "BOUNCER_CHANGELOG_TOPIC": topic + ".suppressions", "BOUNCER_PARTITIONS": "2",
		"BOUNCER_SECRET_KEY": base64.StdEncoding.EncodeToString(key), "BOUNCER_WEBHOOK_ALLOW_NETS": allowOnly(t, good.url, flaky.url, gone.url),
		"BOUNCER_WEBHOOK_RETRY_SCHEDULE": "1s,1s,2s", "BOUNCER_WEBHOOK_TOPIC_PREFIX": prefix,
		"BOUNCER_WEBHOOK_GROUP": topic + ".webhooks", "BOUNCER_WEBHOOK_REFRESH": "200ms", "BOUNCER_WEBHOOK_TIMEOUT": "2s",
		"BOUNCER_WEBHOOK_BATCH_WAIT": "50ms",
		"BOUNCER_API_ADDR":           "127.0.0.1:0", "BOUNCER_API_CHECK": "false", "BOUNCER_API_RATE_LIMIT": "10000",
	}
	t.Cleanup(func() {
		c, err := kafka.Dial("tcp", testenv.Brokers(brokers)[0])
		if err == nil {
			ctrl, err := c.Controller()
			if err == nil {
				if cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, fmt.Sprint(ctrl.Port))); err == nil {
					cc.DeleteTopics(prefix+".retry.1s", prefix+".retry.2s", prefix+".dlq", topic+".suppressions")
					cc.Close()
				}
			}
			c.Close()
		}
	})
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	api := startOpsAPI(t, env)

	all := `"processed":true,"delivered":true,"bounce":true,"dropped":true,"open":true`
	create := func(rc *hookReceiver) string {
		var out struct{ ID string }
		api.do(t, 201, "POST", "/v3/user/webhooks/event/settings", `{"enabled":true,"url":"`+rc.url+`",`+all+`}`, &out)
		var sec struct{ Secret string }
		api.do(t, 200, "GET", "/bouncer/v1/webhooks/"+out.ID+"/secret", "", &sec)
		rc.mu.Lock()
		rc.secret = sec.Secret
		rc.mu.Unlock()
		return out.ID
	}
	goodID, flakyID, goneID := create(good), create(flaky), create(gone)

	stop, logs := startWorker(t, env)
	defer stop()
	waitFor(t, "webhook delivery started", 30*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "webhook delivery started"), logs.String()
	})

	// A hard bounce puts x@ on the bounce list; a later processed event to
	// it gets a derived dropped event, which webhooks see too.
	produceWebhookEvents(t, brokers, topic, []byte(`{"event":"bounce","email":"x@example.com","timestamp":1764201600,"sg_event_id":"b1","type":"bounce","status":"5.1.1","reason":"550 5.1.1 no such user","account_id":"acme"}`))
	store, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ch := store.Conn()
	waitFor(t, "the bounce written", 30*time.Second, func() (bool, string) {
		n, err := tryQueryInt(ch, "SELECT count() FROM suppressions WHERE email_norm = 'x@example.com'")
		return err == nil && n > 0, fmt.Sprint(n, err)
	})
	var events [][]byte
	want := []string{"b1"}
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("w%02d", i)
		want = append(want, id)
		events = append(events, []byte(fmt.Sprintf(`{"event":"delivered","email":"u%d@example.com","timestamp":1764201700,"sg_event_id":%q,"account_id":"acme"}`, i, id)))
	}
	events = append(events, []byte(`{"event":"processed","email":"x@example.com","timestamp":1764201800,"sg_event_id":"p1","account_id":"acme"}`),
		[]byte(`{"event":"delivered","email":"y@example.com","timestamp":1764201800,"sg_event_id":"other-account","account_id":"globex"}`),
		[]byte(`{"event":"delivered",`)) // bad input: skipped here, dead-lettered by the sink
	want = append(want, "p1")
	produceWebhookEvents(t, brokers, topic, events...)

	hasAll := func(rc *hookReceiver) (bool, string) {
		got := rc.got()
		var missing []string
		for _, id := range want {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		dropped := 0
		for id := range got {
			if strings.HasPrefix(id, "bnc1d_") {
				dropped++
			}
		}
		return len(missing) == 0 && dropped == 1, fmt.Sprintf("missing %v, %d derived dropped", missing, dropped)
	}
	waitFor(t, "the good endpoint has every event", 30*time.Second, func() (bool, string) { return hasAll(good) })
	// Its failed batches are retried from the retry tiers: by the schedule
	// (1s,1s,2s, jittered by 10%) each is due again at most 2.2s after it
	// failed, with the circuit closed; 30s leaves room for a loaded machine.
	waitFor(t, "the flaky endpoint has every event", 30*time.Second, func() (bool, string) { return hasAll(flaky) })
	if good.got()["other-account"] {
		t.Errorf("an event of another account was delivered")
	}

	// Retried batches kept their webhook-id.
	flaky.mu.Lock()
	retried := 0
	for _, st := range flaky.answers {
		if len(st) > 1 && st[0] == 503 && st[len(st)-1] == 200 {
			retried++
		}
	}
	badSigs := good.badSigs + flaky.badSigs
	flaky.mu.Unlock()
	if retried == 0 {
		t.Errorf("no webhook-id answered 503 and later 200: %v", flaky.answers)
	}
	if badSigs > 0 {
		t.Errorf("%d requests failed Standard Webhooks verification", badSigs)
	}

	// 410: disabled, visible in the API, batches listed as failed.
	var st struct {
		State          string
		DisabledReason string `json:"disabled_reason"`
		LastFailure    int64  `json:"last_failure"`
	}
	waitFor(t, "the 410 endpoint disabled", 30*time.Second, func() (bool, string) {
		api.do(t, 200, "GET", "/bouncer/v1/webhooks/"+goneID+"/state", "", &st)
		return st.State == "disabled" && strings.Contains(st.DisabledReason, "410") && st.LastFailure > 0, fmt.Sprintf("%+v", st)
	})
	var failed struct {
		Result []struct {
			WebhookID string `json:"webhook_id"`
			Events    int
		}
	}
	waitFor(t, "failed batches of the 410 endpoint", 30*time.Second, func() (bool, string) {
		api.do(t, 200, "GET", "/bouncer/v1/webhooks/"+goneID+"/failed", "", &failed)
		return len(failed.Result) > 0, fmt.Sprintf("%+v", failed)
	})

	// Re-enable, then replay everything that failed: the events arrive.
	gone.status.Store(200)
	api.do(t, 200, "PATCH", "/v3/user/webhooks/event/settings/"+goneID, `{"enabled":true}`, nil)
	waitFor(t, "the endpoint active again", 10*time.Second, func() (bool, string) {
		api.do(t, 200, "GET", "/bouncer/v1/webhooks/"+goneID+"/state", "", &st)
		return st.State == "active", fmt.Sprintf("%+v", st)
	})
	time.Sleep(500 * time.Millisecond) // the worker re-reads subscriptions every 200ms
	var replay struct{ Replayed int }
	api.do(t, 202, "POST", "/bouncer/v1/webhooks/"+goneID+"/replay", `{"since":0}`, &replay)
	if replay.Replayed != len(failed.Result) {
		t.Errorf("replayed %d, want the %d failed batches", replay.Replayed, len(failed.Result))
	}
	replayedEvents := 0
	for _, f := range failed.Result {
		replayedEvents += f.Events
	}
	waitFor(t, "replayed events delivered", 30*time.Second, func() (bool, string) {
		return len(gone.got()) >= replayedEvents, fmt.Sprintf("%d of %d", len(gone.got()), replayedEvents)
	})

	// The delivery log agrees: every batch a receiver accepted has an ok
	// row, every 503 an http_error row.
	waitFor(t, "the delivery log", 30*time.Second, func() (bool, string) {
		var problems []string
		for name, rc := range map[string]*hookReceiver{goodID: good, flakyID: flaky, goneID: gone} {
			rc.mu.Lock()
			for id, sts := range rc.answers {
				for _, s := range sts {
					result := map[int]string{200: "ok", 503: "http_error", 410: "gone"}[s]
					n, err := tryQueryInt(ch, fmt.Sprintf("SELECT count() FROM webhook_deliveries WHERE endpoint_id = '%s' AND webhook_id = '%s' AND result = '%s' AND status = %d", name, id, result, s))
					if err != nil || n == 0 {
						problems = append(problems, fmt.Sprintf("%s %s %d: %d rows %v", name, id, s, n, err))
					}
				}
			}
			rc.mu.Unlock()
		}
		return len(problems) == 0, strings.Join(problems, "\n")
	})
	var deliveries struct{ Result []struct{ Result string } }
	api.do(t, 200, "GET", "/bouncer/v1/webhooks/"+flakyID+"/deliveries?limit=500", "", &deliveries)
	classes := map[string]int{}
	for _, d := range deliveries.Result {
		classes[d.Result]++
	}
	if classes["ok"] == 0 || classes["http_error"] == 0 || classes["parked"] == 0 {
		t.Errorf("flaky endpoint's deliveries %v: want ok, http_error and parked rows", classes)
	}
	if err := stop(); err != nil {
		t.Errorf("worker: %v", err)
	}
	if !strings.Contains(logs.String(), "webhook endpoint disabled") {
		t.Errorf("no operational log line for the disabled endpoint")
	}
}
