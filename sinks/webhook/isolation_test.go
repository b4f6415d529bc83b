package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// eventMessages returns n messages of ten delivered events of account
// acct each, and the events' sg_event_ids.
func eventMessages(acct, prefix string, n int) ([]consumer.Message, []string) {
	var msgs []consumer.Message
	var ids []string
	for i := range n {
		buf := []byte{'['}
		for k := range 10 {
			if k > 0 {
				buf = append(buf, ',')
			}
			id := fmt.Sprintf("%s-%d-%d", prefix, i, k)
			ids = append(ids, id)
			buf = fmt.Appendf(buf, `{"event":"delivered","email":"u%d@example.com","timestamp":1764201600,"sg_event_id":%q,"account_id":%q}`, i, id, acct)
		}
		msgs = append(msgs, consumer.Message{Topic: "events", Offset: int64(i), Value: append(buf, ']')})
	}
	return msgs, ids
}

// startDispatcher runs a dispatcher with one endpoint of account "acct"
// at rc, parking in memory, until the test ends.
func startDispatcher(t *testing.T, rc *receiver, cfg webhook.Config) (*webhook.Dispatcher, *memParker) {
	parker := &memParker{}
	cfg.Registry = &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: "http://" + rc.addr + "/",
		Enabled: true, Events: map[string]bool{"delivered": true}, Secrets: []sign.Secret{{Key: rc.secret}}}}}
	cfg.Client, cfg.Parker = &http.Client{}, parker
	d, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	return d, parker
}

func parkedEvents(p *memParker) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]bool{}
	for _, b := range p.retry {
		for _, e := range b.Events {
			var ev struct {
				ID string `json:"sg_event_id"`
			}
			json.Unmarshal(e, &ev)
			out[ev.ID] = true
		}
	}
	return out
}

// TestFullLaneWaitsWhileSending: a consumed batch holding ten times what
// an endpoint's queue takes is delivered straight, not parked: while the
// lane is sending, the handler waits for room in its queue.
func TestFullLaneWaitsWhileSending(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rc := &receiver{name: "ok", flight: &flight{now: map[string]int{}}, answer: func(int) (int, string) { return 200, "" },
		secret: secret, t: t, got: map[string]int{}, statuses: map[string][]int{}}
	rc.start(t, "127.0.0.1:0")
	d, parker := startDispatcher(t, rc, webhook.Config{MaxBatchEvents: 10, QueueEvents: 10, MaxBatchWait: 20 * time.Millisecond,
		QueueTimeout: 20 * time.Second})
	msgs, ids := eventMessages("acct", "ev", 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.EventHandler(0).Handle(ctx, "events", 0, msgs); err != nil {
		t.Fatal(err)
	}
	if m := rc.received(ids); m > 0 {
		t.Errorf("%d of %d events not delivered when the handler returned", m, len(ids))
	}
	if n := len(parkedEvents(parker)); n > 0 {
		t.Errorf("%d events parked; want every event sent straight, the handler waiting for room", n)
	}
}

// TestFullLaneOfHangingEndpointParks: the same batch for an endpoint that
// hangs is not waited for beyond SlowAfter: what its queue cannot take,
// and what waits in it, is parked, and the handler returns with every
// event parked.
func TestFullLaneOfHangingEndpointParks(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rc := &receiver{name: "hang", flight: &flight{now: map[string]int{}}, answer: func(int) (int, string) { return 0, "" },
		secret: secret, t: t, got: map[string]int{}, statuses: map[string][]int{}}
	rc.start(t, "127.0.0.1:0")
	d, parker := startDispatcher(t, rc, webhook.Config{MaxBatchEvents: 10, QueueEvents: 10, MaxBatchWait: 20 * time.Millisecond,
		QueueTimeout: 5 * time.Second, SlowAfter: 200 * time.Millisecond, AttemptTimeout: 20 * time.Second})
	msgs, ids := eventMessages("acct", "ev", 10)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := d.EventHandler(0).Handle(ctx, "events", 0, msgs); err != nil {
		t.Fatalf("handler did not return before its deadline with every event parked: %v", err)
	}
	parked := parkedEvents(parker)
	for _, id := range ids {
		if !parked[id] {
			t.Errorf("event %s neither delivered nor parked when the handler returned", id)
		}
	}
}

// committedOffset reads a group's committed offset of partition 0 (-1:
// none).
func committedOffset(t *testing.T, brokers []string, group, topic string) int64 {
	c := &kafka.Client{Addr: kafka.TCP(brokers...)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition == 0 {
			return p.CommittedOffset
		}
	}
	return -1
}

// TestConsumerMovesOnWhileEndpointHangs runs the webhook group on real
// Kafka with SlowAfter far away: while the first attempt to a hanging
// endpoint runs, events consumed after it still reach a healthy endpoint
// (the group hands the next batches on), but nothing is committed until
// that attempt ends; then everything is.
func TestConsumerMovesOnWhileEndpointHangs(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	secret := []byte("0123456789abcdef0123456789abcdef")
	fl := &flight{now: map[string]int{}}
	release := make(chan struct{})
	var hanging atomic.Int32
	hang := &receiver{name: "hang", flight: fl, secret: secret, t: t, got: map[string]int{}, statuses: map[string][]int{}}
	hang.answer = func(int) (int, string) {
		hanging.Add(1)
		defer hanging.Add(-1)
		<-release
		return 200, ""
	}
	ok := &receiver{name: "ok", flight: fl, answer: func(int) (int, string) { return 200, "" }, secret: secret, t: t,
		got: map[string]int{}, statuses: map[string][]int{}}
	hang.start(t, "127.0.0.1:0")
	ok.start(t, "127.0.0.1:0")
	released := sync.OnceFunc(func() { close(release) })
	t.Cleanup(released)
	reg := &memRegistry{}
	for _, rc := range []*receiver{hang, ok} {
		reg.eps = append(reg.eps, subscription.Webhook{ID: "ep-" + rc.name, AccountID: "acct-" + rc.name, URL: "http://" + rc.addr + "/",
			Enabled: true, Events: map[string]bool{"delivered": true}, Secrets: []sign.Secret{{Key: secret}}})
	}
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{time.Second, 2 * time.Second}}
	deleteTopics(t, brokers, topics.All())
	dc := webhook.Config{Registry: reg, Client: &http.Client{},
		Schedule: webhook.Schedule{Delays: topics.Delays}, MaxBatchWait: 20 * time.Millisecond,
		AttemptTimeout: 40 * time.Second, SlowAfter: 30 * time.Second, QueueTimeout: 30 * time.Second}
	probe := dc
	probe.Parker = &memParker{}
	if d, err := webhook.New(probe); err != nil {
		t.Fatal(err)
	} else if _, isStager := d.EventHandler(0).(consumer.Stager); !isStager {
		t.Fatal("the webhook handler is not a consumer.Stager: the group would wait for each batch")
	}
	group := topic + ".webhooks"
	shutdown := runDelivery(t, ctx, kafkatier.DeliveryConfig{Conn: conn, Topic: topic, Group: group, Topics: topics, Dispatcher: dc})
	defer func() { released(); shutdown() }()

	w, err := consumer.NewWriter(consumer.Conn{Brokers: conn.Brokers}, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	event := func(acct, id string) string {
		return fmt.Sprintf(`{"event":"delivered","email":"a@example.com","timestamp":1764201600,"sg_event_id":%q,"account_id":%q}`, id, acct)
	}
	// Offset 0: one event for each endpoint.
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("[" + event("acct-hang", "first-hang") + "," + event("acct-ok", "first-ok") + "]")}); err != nil {
		t.Fatal(err)
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
	waitFor("the hanging endpoint's first request", func() bool { return hanging.Load() > 0 })
	// Offsets 1..5, consumed after the batch the hanging attempt holds.
	var later []string
	for i := range 5 {
		id := fmt.Sprintf("later-%d", i)
		later = append(later, id)
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(event("acct-ok", id))}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor("the healthy endpoint to get the later events", func() bool { return ok.received(later) == 0 })
	if hanging.Load() == 0 {
		t.Fatal("the hanging attempt ended before the test released it")
	}
	if off := committedOffset(t, conn.Brokers, group, topic); off > 0 {
		t.Errorf("committed offset %d while the batch at offset 0 still waits for its attempt; want nothing committed", off)
	}
	released()
	waitFor("every offset committed after the attempt ended", func() bool { return committedOffset(t, conn.Brokers, group, topic) == 6 })
	if m := hang.received([]string{"first-hang"}); m > 0 {
		t.Error("the hanging endpoint's event was not delivered once released")
	}
	if len(fl.overlaps) > 0 {
		t.Errorf("webhook-ids in flight twice at once: %v", fl.overlaps)
	}
}
