package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// memRegistry is an in-memory Registry.
type memRegistry struct {
	mu  sync.Mutex
	eps []subscription.Webhook
}

func (r *memRegistry) Endpoints(context.Context) ([]subscription.Webhook, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.eps), nil
}

func (r *memRegistry) DisableEndpoint(_ context.Context, id string, at time.Time, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.eps {
		if r.eps[i].ID == id {
			r.eps[i].DisabledAt, r.eps[i].DisabledReason = at, reason
		}
	}
	return nil
}

func (r *memRegistry) get(id string) subscription.Webhook {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.eps {
		if e.ID == id {
			return e
		}
	}
	return subscription.Webhook{}
}

// memFailed records given-up batches.
type memFailed struct {
	mu      sync.Mutex
	batches []*webhook.Batch
}

func (f *memFailed) WriteFailedBatches(_ context.Context, rows []subscription.FailedBatch) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rows {
		b, err := webhook.UnmarshalBatch(r.Batch)
		if err != nil {
			return err
		}
		f.batches = append(f.batches, b)
	}
	return nil
}

func (f *memFailed) forEndpoint(id string) []*webhook.Batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*webhook.Batch
	for _, b := range f.batches {
		if b.EndpointID == id {
			out = append(out, b)
		}
	}
	return out
}

// memLog is a DeliveryStore in memory.
type memLog struct {
	mu   sync.Mutex
	rows []subscription.Delivery
}

func (l *memLog) WriteDeliveries(_ context.Context, rows []subscription.Delivery) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = append(l.rows, rows...)
	return nil
}

func (l *memLog) all() []subscription.Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.rows)
}

// flight records every webhook-id in flight across all receivers and the
// largest number of concurrent requests seen for one id.
type flight struct {
	mu       sync.Mutex
	now      map[string]int
	overlaps []string
}

func (f *flight) enter(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[id]++
	if f.now[id] > 1 {
		f.overlaps = append(f.overlaps, id)
	}
}

func (f *flight) leave(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now[id]--
}

// receiver is a loopback endpoint whose behaviour a test chooses per
// request number.
type receiver struct {
	name   string
	flight *flight
	// answer returns the status for request n (1-based); 0 means hang
	// until the client gives up, -1 reset the connection.
	answer func(n int) (status int, retryAfter string)
	secret []byte
	t      *testing.T

	mu       sync.Mutex
	n        int
	got      map[string]int   // sg_event_id -> 2xx deliveries
	statuses map[string][]int // webhook-id -> statuses answered
	badSigs  int
	srv      *http.Server
	addr     string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	rc.flight.enter(id)
	defer rc.flight.leave(id)
	body := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	rc.mu.Lock()
	rc.n++
	n := rc.n
	rc.mu.Unlock()
	status, ra := rc.answer(n)
	switch status {
	case 0:
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	case -1:
		hj, ok := w.(http.Hijacker)
		if ok {
			c, _, _ := hj.Hijack()
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
		}
		return
	}
	wh, _ := standardwebhooks.NewWebhookRaw(rc.secret)
	sigOK := wh.Verify(body, r.Header) == nil
	var evs []map[string]any
	jsonOK := json.Unmarshal(body, &evs) == nil
	rc.mu.Lock()
	rc.statuses[id] = append(rc.statuses[id], status)
	if !sigOK || !jsonOK {
		rc.badSigs++
	}
	if status/100 == 2 {
		for _, ev := range evs {
			rc.got[fmt.Sprint(ev["sg_event_id"])]++
		}
	}
	rc.mu.Unlock()
	if ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "answer %d to request %d", status, n)
}

func (rc *receiver) start(t *testing.T, addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("receiver %s: %v", rc.name, err)
	}
	rc.addr = ln.Addr().String()
	rc.srv = &http.Server{Handler: rc}
	go rc.srv.Serve(ln)
	t.Cleanup(func() { rc.srv.Close() })
}

func (rc *receiver) received(ids []string) (missing int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, id := range ids {
		if rc.got[id] == 0 {
			missing++
		}
	}
	return missing
}

func deleteTopics(t testing.TB, brokers string, topics []string) {
	t.Cleanup(func() {
		c, err := kafka.Dial("tcp", testenv.Brokers(brokers)[0])
		if err != nil {
			return
		}
		defer c.Close()
		ctrl, err := c.Controller()
		if err != nil {
			return
		}
		cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, fmt.Sprint(ctrl.Port)))
		if err != nil {
			return
		}
		defer cc.Close()
		cc.DeleteTopics(topics...)
	})
}

// TestDeliveryAgainstMisbehavingReceivers runs the webhook group and its
// retry tiers on real Kafka with a compressed schedule against receivers
// that succeed, fail with 5xx, rate-limit with Retry-After, answer 410,
// hang past the timeout, reset connections, and are down at first. Every
// event reaches every live endpoint, no webhook-id is ever in flight
// twice, retries keep their webhook-id, the 410 endpoint is disabled with

// runDelivery runs cfg's kafkatier.Delivery, the worker's webhook delivery
// (the webhook group, the retry tiers, the dead letters' copy, the
// dispatcher and its log writer), until the returned func shuts it down in
// its own order; the test fails when it did not stop cleanly. Defaults:
// group TOPIC.webhooks, 1 partition, MaxWait 50ms, in-memory log and
// failed stores.
func runDelivery(t *testing.T, ctx context.Context, cfg kafkatier.DeliveryConfig) (shutdown func()) {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = cfg.Topic + ".webhooks"
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 50 * time.Millisecond
	}
	if cfg.DeliveryLog == nil {
		cfg.DeliveryLog = &memLog{}
	}
	if cfg.Failed == nil {
		cfg.Failed = &memFailed{}
	}
	d, err := kafkatier.NewDelivery(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(context.Background()) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := d.Shutdown(sctx); err != nil {
				t.Errorf("delivery shutdown: %v", err)
				return
			}
			if err := <-ran; err != nil {
				t.Errorf("delivery stopped with %v", err)
			}
		})
	}
}

// its batches kept for replay, and the delivery log agrees.
func TestDeliveryAgainstMisbehavingReceivers(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 2)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	fl := &flight{now: map[string]int{}}
	secret := []byte("0123456789abcdef0123456789abcdef")
	mk := func(name string, answer func(n int) (int, string)) *receiver {
		return &receiver{name: name, flight: fl, answer: answer, secret: secret, t: t, got: map[string]int{}, statuses: map[string][]int{}}
	}
	always := func(s int) func(int) (int, string) { return func(int) (int, string) { return s, "" } }
	firstThen := func(k, bad int, ra string) func(int) (int, string) {
		return func(n int) (int, string) {
			if n <= k {
				return bad, ra
			}
			return 200, ""
		}
	}
	recvs := []*receiver{
		mk("ok", always(200)),
		mk("5xx", firstThen(3, 503, "")),
		mk("429", firstThen(2, 429, "1")),
		mk("gone", always(410)),
		mk("hang", firstThen(2, 0, "")),
		mk("reset", firstThen(3, -1, "")),
		mk("down", always(204)),
	}
	reg := &memRegistry{}
	for _, rc := range recvs {
		addr := "127.0.0.1:0"
		if rc.name == "down" {
			// Reserve a port, then leave it closed: connection refused.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			rc.addr = ln.Addr().String()
			ln.Close()
		} else {
			rc.start(t, addr)
		}
		reg.eps = append(reg.eps, subscription.Webhook{ID: "ep-" + rc.name, AccountID: "acct", URL: "http://" + rc.addr + "/hook",
			Enabled: true, Events: map[string]bool{"processed": true, "delivered": true, "bounce": true, "dropped": true},
			Secrets: []sign.Secret{{Key: secret}}, UpdatedAt: time.Now()})
	}
	// Another account's endpoint must see none of these events.
	other := mk("other", always(200))
	other.start(t, "127.0.0.1:0")
	reg.eps = append(reg.eps, subscription.Webhook{ID: "ep-other", AccountID: "other", URL: "http://" + other.addr + "/",
		Enabled: true, Events: map[string]bool{"processed": true, "delivered": true, "bounce": true}, Secrets: []sign.Secret{{Key: secret}}})

	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second}}
	deleteTopics(t, brokers, topics.All())
	failed := &memFailed{}
	store := &memLog{}
	shutdown := runDelivery(t, ctx, kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Topics: topics, Partitions: 2,
		Dispatcher: webhook.Config{
			Registry: reg, Client: &http.Client{},
			Schedule:       webhook.Schedule{Delays: topics.Delays, Jitter: 0.1},
			MaxBatchEvents: 25, MaxBatchWait: 50 * time.Millisecond, AttemptTimeout: time.Second,
			QueueTimeout: time.Second, SlowAfter: 300 * time.Millisecond, BreakerFailures: 3, BreakerOpen: time.Second, RefreshEvery: 200 * time.Millisecond,
		},
		DeliveryLog: store, Failed: failed, MaxBatchMessages: 200, MaxWait: 100 * time.Millisecond,
	})
	defer shutdown()

	// 300 events: single objects and arrays of three, one without an
	// sg_event_id (bouncer derives one), plus bad input.
	w, err := consumer.NewWriter(consumer.Conn{Brokers: conn.Brokers}, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var ids []string
	var msgs []kafka.Message
	kinds := []string{"processed", "delivered", "bounce"}
	ev := func(i int) string {
		id := fmt.Sprintf("ev-%04d", i)
		ids = append(ids, id)
		return fmt.Sprintf(`{"email":"user%d@example.com","timestamp":%d,"event":%q,"sg_event_id":%q,"account_id":"acct","n":%d}`,
			i, time.Now().Unix(), kinds[i%3], id, i)
	}
	for i := 0; i < 300; {
		if i%2 == 0 {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: []byte("[" + ev(i) + "," + ev(i+1) + "," + ev(i+2) + "]")})
			i += 3
		} else {
			msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: []byte(ev(i))})
			i++
		}
	}
	msgs = append(msgs, kafka.Message{Value: []byte(`{"event":"bogus"`)},
		kafka.Message{Value: []byte(`{"email":"noid@example.com","timestamp":1764201600,"event":"delivered","account_id":"acct"}`)})
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	// The "down" receiver comes up after a few seconds at its address.
	time.Sleep(3 * time.Second)
	down := recvs[len(recvs)-1]
	down.start(t, down.addr)

	live := []*receiver{recvs[0], recvs[1], recvs[2], recvs[4], recvs[5], recvs[6]}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		missing := 0
		for _, rc := range live {
			missing += rc.received(ids)
		}
		if missing == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	shutdown() // the log writer's rows are written before it returns

	for _, rc := range live {
		if m := rc.received(ids); m > 0 {
			t.Errorf("receiver %s: %d of %d events never delivered", rc.name, m, len(ids))
		}
		rc.mu.Lock()
		if rc.badSigs > 0 {
			t.Errorf("receiver %s: %d requests failed Standard Webhooks verification or were not a JSON array", rc.name, rc.badSigs)
		}
		derived := 0
		for id := range rc.got {
			if strings.HasPrefix(id, "bnc1_") {
				derived++
			}
		}
		rc.mu.Unlock()
		if derived != 1 {
			t.Errorf("receiver %s: %d events with a derived sg_event_id, want 1 (the event sent without one)", rc.name, derived)
		}
	}
	if len(fl.overlaps) > 0 {
		t.Errorf("webhook-ids in flight twice at once: %v", fl.overlaps)
	}
	if n := len(other.got); n != 0 {
		t.Errorf("another account's endpoint got %d events", n)
	}

	// Retries keep their webhook-id: the 5xx receiver saw one id fail and
	// then succeed.
	retried := 0
	for _, st := range recvs[1].statuses {
		if len(st) > 1 && st[0] == 503 && st[len(st)-1] == 200 {
			retried++
		}
	}
	if retried == 0 {
		t.Errorf("5xx receiver: no webhook-id failed and later succeeded; statuses %v", recvs[1].statuses)
	}

	// 410: disabled, its batches kept for replay.
	gone := reg.get("ep-gone")
	if gone.DisabledAt.IsZero() || !strings.Contains(gone.DisabledReason, "410") {
		t.Errorf("gone endpoint: disabled at %v reason %q, want disabled for 410", gone.DisabledAt, gone.DisabledReason)
	}
	if fb := failed.forEndpoint("ep-gone"); len(fb) == 0 {
		t.Errorf("gone endpoint: no failed batches recorded")
	}

	// The delivery log agrees with what the receivers answered.
	rows := store.all()
	okLogged := map[string]bool{}
	for _, r := range rows {
		if r.Result == webhook.ResultOK {
			okLogged[r.WebhookID] = true
		}
	}
	for _, rc := range append(live, recvs[3]) {
		rc.mu.Lock()
		for id, st := range rc.statuses {
			if st[len(st)-1]/100 == 2 && !okLogged[id] {
				t.Errorf("receiver %s accepted %s but the log has no ok row for it", rc.name, id)
			}
		}
		rc.mu.Unlock()
	}
	// The hanging endpoint's batches were parked ahead while their attempt
	// still ran (the consumer moved on) and still arrived exactly as the
	// overlap check above demands.
	shadowed := 0
	for _, r := range rows {
		if r.EndpointID == "ep-hang" && r.Result == webhook.ResultParked && strings.Contains(r.Response, "still running") {
			shadowed++
		}
	}
	if shadowed == 0 {
		t.Errorf("no batch of the hanging endpoint was parked while its attempt ran")
	}
	classes := map[string]int{}
	for _, r := range rows {
		classes[r.Result]++
	}
	for _, c := range []string{webhook.ResultOK, webhook.ResultHTTPError, webhook.ResultTimeout, webhook.ResultConnection, webhook.ResultGone, webhook.ResultParked, webhook.ResultExhausted} {
		if classes[c] == 0 {
			t.Errorf("delivery log has no %q row; classes %v", c, classes)
		}
	}
	t.Logf("delivery log classes: %v", classes)

	// The account sees a class, never the receiver's body or a connection
	// error's text (the security review's finding 1: those read internal
	// services' answers and scanned ports).
	leaks := func(s string) bool {
		return strings.Contains(s, "to request") || strings.Contains(s, "127.0.0.1") || strings.Contains(s, "dial") ||
			strings.Contains(s, "EOF") || strings.Contains(s, "reset by peer")
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if leaks(r.Response) {
			t.Errorf("delivery log row %s %s shows %q", r.EndpointID, r.Result, r.Response)
		}
		seen[r.EndpointID+" "+r.Result+" "+r.Response] = true
	}
	for _, want := range []string{
		"ep-5xx http_error HTTP 503 Service Unavailable",
		"ep-gone gone HTTP 410 Gone",
		"ep-down connection refused: the connection was refused",
		"ep-hang timeout timeout: no answer in time",
		"ep-reset connection connection: the connection failed or closed before an answer",
	} {
		if !seen[want] {
			t.Errorf("delivery log has no row %q", want)
		}
	}
	for _, ep := range []string{"ep-gone", "ep-down"} {
		for _, b := range failed.forEndpoint(ep) {
			if leaks(b.LastError) {
				t.Errorf("failed batch of %s: last error %q", ep, b.LastError)
			}
		}
	}
}

// TestDisableAfterFailingTooLong: an endpoint that fails without a single
// success for DisableAfter is disabled like a 410 one, and what was on its
// way is kept as failed batches.
func TestDisableAfterFailingTooLong(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fl := &flight{now: map[string]int{}}
	rc := &receiver{name: "500", flight: fl, answer: func(int) (int, string) { return 500, "" }, t: t,
		got: map[string]int{}, statuses: map[string][]int{}}
	rc.start(t, "127.0.0.1:0")
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep-500", AccountID: "acct", URL: "http://" + rc.addr + "/",
		Enabled: true, Events: map[string]bool{"delivered": true}}}}
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, time.Second, time.Second}}
	deleteTopics(t, brokers, topics.All())
	failed := &memFailed{}
	defer runDelivery(t, ctx, kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Topics: topics, Failed: failed,
		Dispatcher: webhook.Config{Registry: reg, Client: &http.Client{},
			Schedule: webhook.Schedule{Delays: topics.Delays}, MaxBatchWait: 50 * time.Millisecond, AttemptTimeout: time.Second,
			BreakerFailures: 100, DisableAfter: 1500 * time.Millisecond, RefreshEvery: 100 * time.Millisecond},
	})()

	w, err := consumer.NewWriter(consumer.Conn{Brokers: conn.Brokers}, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 5 {
		if err := w.WriteMessages(ctx, kafka.Message{Value: fmt.Appendf(nil, `{"email":"a%d@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":"f%d","account_id":"acct"}`, i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ep := reg.get("ep-500")
		if !ep.DisabledAt.IsZero() && len(failed.forEndpoint("ep-500")) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ep := reg.get("ep-500")
	if ep.DisabledAt.IsZero() || !strings.Contains(ep.DisabledReason, "without a success") {
		t.Fatalf("endpoint failing for longer than DisableAfter: disabled at %v, reason %q", ep.DisabledAt, ep.DisabledReason)
	}
	// Every event is in a failed batch: nothing dropped.
	deadline = time.Now().Add(20 * time.Second)
	var kept map[string]bool
	for time.Now().Before(deadline) {
		kept = map[string]bool{}
		for _, b := range failed.forEndpoint("ep-500") {
			for _, e := range b.Events {
				var ev struct {
					ID string `json:"sg_event_id"`
				}
				json.Unmarshal(e, &ev)
				kept[ev.ID] = true
			}
		}
		if len(kept) == 5 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(kept) != 5 {
		t.Errorf("failed batches hold %d of the 5 events: %v", len(kept), kept)
	}
}

// memParker keeps parked batches in memory (for logic tests without Kafka).
type memParker struct {
	mu             sync.Mutex
	retry, givenUp []*webhook.Batch
}

func (p *memParker) Retry(_ context.Context, bs []*webhook.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retry = append(p.retry, bs...)
	return nil
}

func (p *memParker) GiveUp(_ context.Context, bs []*webhook.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.givenUp = append(p.givenUp, bs...)
	return nil
}

type fixedHealth time.Time

func (h fixedHealth) FailingSince(context.Context, string, string) (time.Time, error) {
	return time.Time(h), nil
}

// TestFailingSinceSurvivesRestart: the disable-after clock starts where the
// delivery log says the failures began, not when this process started.
// TestFailingSinceSurvivesRestart: a new lane reads when its endpoint
// started failing from the delivery log, so a restart does not reset the
// clock; a change to the subscription after that (a re-enable) does.
func TestFailingSinceSurvivesRestart(t *testing.T) {
	began := time.Now().Add(-2 * time.Hour)
	for _, tc := range []struct {
		name         string
		updated      time.Time
		wantDisabled bool
	}{
		{"failing for two hours", time.Time{}, true},
		{"re-enabled a minute ago", time.Now().Add(-time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := &flight{now: map[string]int{}}
			rc := &receiver{name: "500", flight: fl, answer: func(int) (int, string) { return 500, "" }, t: t,
				got: map[string]int{}, statuses: map[string][]int{}}
			rc.start(t, "127.0.0.1:0")
			reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: "http://" + rc.addr + "/",
				Enabled: true, Events: map[string]bool{"delivered": true}, UpdatedAt: tc.updated}}}
			parker := &memParker{}
			d, err := webhook.New(webhook.Config{Registry: reg, Client: &http.Client{}, Parker: parker,
				Health: fixedHealth(began), DisableAfter: time.Hour, RefreshEvery: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go d.Run(ctx)
			for !d.Ready() {
				time.Sleep(10 * time.Millisecond)
			}
			b := &webhook.Batch{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acct", Attempts: 1,
				Events: []json.RawMessage{json.RawMessage(`{"event":"delivered","sg_event_id":"x"}`)}}
			// The lane's history is read when the lane starts; give it a moment.
			if err := d.Redeliver(ctx, []*webhook.Batch{{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acct",
				Events: []json.RawMessage{json.RawMessage(`{}`)}}}); err != nil {
				t.Fatal(err)
			}
			if err := d.Redeliver(ctx, []*webhook.Batch{b}); err != nil {
				t.Fatal(err)
			}
			ep := reg.get("ep")
			if !tc.wantDisabled {
				if !ep.DisabledAt.IsZero() {
					t.Errorf("disabled (%q) by a failure right after it was re-enabled", ep.DisabledReason)
				}
				return
			}
			if ep.DisabledAt.IsZero() || !strings.Contains(ep.DisabledReason, began.UTC().Format(time.RFC3339)) {
				t.Errorf("disabled at %v, reason %q: want disabled as failing since %v", ep.DisabledAt, ep.DisabledReason, began.UTC().Format(time.RFC3339))
			}
		})
	}
}

// TestLongRetryAfterHoldsBackNoOne: an endpoint answering 503 with
// Retry-After of an hour parks its batch in a tier partition, due in an
// hour; another endpoint's batch, parked behind it in the same partition
// a moment later, is due in a second. Before, the tier consumer waited for
// the batch at the head, so the second endpoint's retry waited an hour
// too. Now the hour-long batch moves to the back once something is behind
// it: the other retry goes out at once, and the hour-long one is not sent
// early.
func TestLongRetryAfterHoldsBackNoOne(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	fl := &flight{now: map[string]int{}}
	mk := func(name string, answer func(n int) (int, string)) *receiver {
		rc := &receiver{name: name, flight: fl, answer: answer, t: t, got: map[string]int{}, statuses: map[string][]int{}}
		rc.start(t, "127.0.0.1:0")
		return rc
	}
	hour := mk("hour", func(int) (int, string) { return 503, "3600" })
	once := mk("once", func(n int) (int, string) {
		if n == 1 {
			return 503, ""
		}
		return 200, ""
	})
	reg := &memRegistry{eps: []subscription.Webhook{
		{ID: "ep-hour", AccountID: "acct-hour", URL: "http://" + hour.addr + "/", Enabled: true, Events: map[string]bool{"delivered": true}},
		{ID: "ep-once", AccountID: "acct-once", URL: "http://" + once.addr + "/", Enabled: true, Events: map[string]bool{"delivered": true}},
	}}
	// The hour is longer than the first step and shorter than the last:
	// the dispatcher parks the batch in the first tier, due in an hour.
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{time.Second, 2 * time.Hour}}
	deleteTopics(t, brokers, topics.All())
	defer runDelivery(t, ctx, kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Topics: topics,
		Dispatcher: webhook.Config{Registry: reg, Client: &http.Client{},
			Schedule: webhook.Schedule{Delays: topics.Delays}, MaxBatchWait: 20 * time.Millisecond, RefreshEvery: 100 * time.Millisecond},
	})()

	w, err := consumer.NewWriter(consumer.Conn{Brokers: conn.Brokers}, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	send := func(acct, id string) {
		t.Helper()
		if err := w.WriteMessages(ctx, kafka.Message{Value: fmt.Appendf(nil, `{"email":"a@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":%q,"account_id":%q}`, id, acct)}); err != nil {
			t.Fatal(err)
		}
	}
	requests := func(rc *receiver) int {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("gave up waiting: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tier := &kafka.Client{Addr: kafka.TCP(conn.Brokers...)}
	tierEnd := func() int64 {
		resp, err := tier.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topics.Tier(0): {kafka.LastOffsetOf(0)}}})
		if err != nil || len(resp.Topics[topics.Tier(0)]) != 1 {
			return -1
		}
		return resp.Topics[topics.Tier(0)][0].LastOffset
	}

	send("acct-hour", "hour-1")
	waitFor("the hour-long batch parked in the first tier", func() bool { return requests(hour) == 1 && tierEnd() >= 1 })
	send("acct-once", "once-1")
	waitFor("the other endpoint's first attempt", func() bool { return requests(once) >= 1 })
	// Due a second after its failure: within the deadline unless it waits
	// behind the hour-long batch.
	deadline := time.Now().Add(20 * time.Second)
	for once.received([]string{"once-1"}) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if once.received([]string{"once-1"}) > 0 {
		t.Fatalf("the other endpoint's retry, due after a second, was not sent within 20s: it waits behind the batch due in an hour")
	}
	if n := requests(hour); n != 1 {
		t.Errorf("the endpoint that asked for an hour got %d requests, want 1 (its retry is not due yet)", n)
	}
	// The hour-long batch is still in the tier, past the tier group's
	// commit: moved, not dropped.
	group := kafkatier.TierConfig{Topics: topics, Group: topic + ".webhooks"}.GroupOf(0)
	committed := int64(-1)
	if resp, err := tier.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topics.Tier(0): {0}}}); err == nil {
		for _, p := range resp.Topics[topics.Tier(0)] {
			committed = p.CommittedOffset
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Topic: topics.Tier(0), Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	kept := false
	for end := tierEnd(); ; {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := webhook.UnmarshalBatch(m.Value); err == nil && b.EndpointID == "ep-hour" && m.Offset >= committed {
			kept = kept || time.Until(b.Due) > 50*time.Minute
		}
		if m.Offset >= end-1 {
			break
		}
	}
	if !kept {
		t.Errorf("no batch of the endpoint that asked for an hour, due in about an hour, at or after the tier group's commit (%d)", committed)
	}
	if len(fl.overlaps) > 0 {
		t.Errorf("webhook-ids in flight twice at once: %v", fl.overlaps)
	}
}

// TestDeletedEndpointsReleaseTheirLanes: each endpoint that got events has
// a lane (a goroutine) on the worker; deleting the subscriptions must stop
// them. Before, the lanes of 1,000 deleted endpoints stayed until restart.
func TestDeletedEndpointsReleaseTheirLanes(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	const endpoints = 1000
	reg := &memRegistry{}
	for i := range endpoints {
		reg.eps = append(reg.eps, subscription.Webhook{ID: fmt.Sprintf("ep-%04d", i), AccountID: "acct",
			URL: fmt.Sprintf("http://%s/%d", ln.Addr(), i), Enabled: true, Events: map[string]bool{"delivered": true}})
	}
	parker := &memParker{}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: client, Parker: parker, MaxBatchWait: 10 * time.Millisecond,
		RefreshEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { defer close(ran); d.Run(runCtx) }()
	defer func() { stop(); <-ran }()
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	// Goroutines of lanes (of any dispatcher: earlier tests' may still be
	// stopping, so their number only falls), and all goroutines.
	lanes := func() int {
		buf := make([]byte, 64<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "webhook.(*lane).run(")
	}
	time.Sleep(100 * time.Millisecond) // the dispatcher's own goroutines settle
	baseLanes, baseline := lanes(), runtime.NumGoroutine()

	// One event for the account goes to every endpoint: 1,000 lanes.
	msg := consumer.Message{Topic: "events", Offset: 1,
		Value: []byte(`{"email":"a@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":"e1","account_id":"acct"}`)}
	if err := d.EventHandler(0).Handle(ctx, "events", 0, []consumer.Message{msg}); err != nil {
		t.Fatal(err)
	}
	if n := lanes(); n < baseLanes+endpoints {
		t.Fatalf("%d lane goroutines after events for %d endpoints, %d before", n, endpoints, baseLanes)
	}

	reg.mu.Lock()
	reg.eps = nil
	reg.mu.Unlock()
	const slack = 5
	deadline := time.Now().Add(60 * time.Second)
	for (lanes() > baseLanes || runtime.NumGoroutine() > baseline+slack) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n, g := lanes(), runtime.NumGoroutine(); n > baseLanes || g > baseline+slack {
		t.Errorf("60s after deleting the %d endpoints: %d lane goroutines (%d before), %d goroutines (baseline %d): their lanes were not released",
			endpoints, n, baseLanes, g, baseline)
	}

	// A deleted endpoint's lane is gone: a retried batch for it is given
	// up, not sent.
	b := &webhook.Batch{WebhookID: webhook.NewWebhookID(), EndpointID: "ep-0007", AccountID: "acct", Attempts: 1,
		Events: []json.RawMessage{json.RawMessage(`{"event":"delivered","sg_event_id":"e2"}`)}}
	if err := d.Redeliver(ctx, []*webhook.Batch{b}); err != nil {
		t.Fatal(err)
	}
	parker.mu.Lock()
	defer parker.mu.Unlock()
	var gone []*webhook.Batch
	for _, g := range parker.givenUp {
		if g.WebhookID == b.WebhookID {
			gone = append(gone, g)
		}
	}
	if len(gone) != 1 || gone[0].Reason != "endpoint deleted" {
		t.Errorf("given up %v, want the batch for the deleted endpoint", gone)
	}
}

// TestCopyHandedBackWhileItsAttemptRuns: a slow attempt parks a copy of
// its batch (same webhook-id), due after the attempt's deadline. If the
// copy is handed back while the attempt still runs (a tier consumer on a
// clock ahead, a worker restarted between parking the copy and
// committing), it waits for that attempt, never sending the id twice at
// once. When the attempt then fails, the copy must be parked again: before,
// it was reported done with the attempt's end, so the tier committed it
// and the batch, in no tier any more, was never sent.
func TestCopyHandedBackWhileItsAttemptRuns(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		w.WriteHeader(http.StatusServiceUnavailable)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: "http://" + ln.Addr().String() + "/",
		Enabled: true, Events: map[string]bool{"delivered": true}}}}
	parker := &memParker{}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: &http.Client{}, Parker: parker, SlowAfter: 100 * time.Millisecond,
		AttemptTimeout: 5 * time.Second, Schedule: webhook.Schedule{Delays: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	b := &webhook.Batch{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acct", Attempts: 1,
		Events: []json.RawMessage{json.RawMessage(`{"event":"delivered","sg_event_id":"x"}`)}}
	parked := func() []*webhook.Batch {
		parker.mu.Lock()
		defer parker.mu.Unlock()
		var out []*webhook.Batch
		for _, p := range parker.retry {
			if p.WebhookID == b.WebhookID {
				out = append(out, p)
			}
		}
		return out
	}
	first := make(chan error, 1)
	go func() { first <- d.Redeliver(ctx, []*webhook.Batch{b}) }()
	for len(parked()) == 0 {
		if ctx.Err() != nil {
			t.Fatal("the slow attempt parked no copy")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cp := *parked()[0]
	if err := d.Redeliver(ctx, []*webhook.Batch{&cp}); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The attempt failed: the copy handed back is done only once it is
	// parked again (the tier commits it then).
	if n := len(parked()); n < 2 {
		t.Errorf("the copy handed back was reported done after its attempt failed, but is parked %d times in all (just the first copy the tier then committed): the batch is lost", n)
	}
}
