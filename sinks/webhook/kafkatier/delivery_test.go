package kafkatier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

type oneEndpoint struct{ ep subscription.Webhook }

func (r oneEndpoint) Endpoints(context.Context) ([]subscription.Webhook, error) {
	return []subscription.Webhook{r.ep}, nil
}
func (oneEndpoint) DisableEndpoint(context.Context, string, time.Time, string) error { return nil }

type memRows struct {
	mu   sync.Mutex
	rows []subscription.Delivery
}

func (m *memRows) WriteDeliveries(_ context.Context, rows []subscription.Delivery) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, rows...)
	return nil
}

func (m *memRows) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}

type noFailed struct{}

func (noFailed) WriteFailedBatches(context.Context, []subscription.FailedBatch) error { return nil }

// TestDeliveryShutdown: a Delivery delivers what the events topic holds;
// Shutdown stops it in its own order (the delivery log rows of what was
// delivered are written before it returns), returns nil however often it
// is called, and a Delivery shut down before it ran never runs.
func TestDeliveryShutdown(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{time.Minute}}
	t.Cleanup(func() { deleteTopics(conn.Brokers[0], topics.All()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var events atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) == nil {
			events.Add(int64(len(batch)))
		}
	}))
	defer srv.Close()
	reg := oneEndpoint{subscription.Webhook{ID: "ep", AccountID: "acct", URL: srv.URL + "/", Enabled: true,
		Events: map[string]bool{"delivered": true}, Secrets: []sign.Secret{{Key: []byte("0123456789abcdef0123456789abcdef")}}}}
	log := &memRows{}
	cfg := kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Group: topic + ".webhooks", Topics: topics, Partitions: 1,
		Dispatcher: webhook.Config{Registry: reg, Client: &http.Client{}, Schedule: webhook.Schedule{Delays: topics.Delays},
			MaxBatchWait: 50 * time.Millisecond, AttemptTimeout: 5 * time.Second, RefreshEvery: 100 * time.Millisecond},
		DeliveryLog: log, Failed: noFailed{}, MaxWait: 50 * time.Millisecond,
	}
	d, err := kafkatier.NewDelivery(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(context.Background()) }()

	w, err := consumer.NewWriter(conn, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 5
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Value: fmt.Appendf(nil,
			`{"email":"a%d@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":"d%d","account_id":"acct"}`, i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for events.Load() < n {
		if ctx.Err() != nil {
			t.Fatalf("delivered %d of %d events in 2 minutes", events.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 2 {
		if err := d.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	if err := <-ran; err != nil {
		t.Errorf("Run after Shutdown: %v", err)
	}
	// The log writer flushes on Shutdown: the deliveries are logged once it
	// returned (the writer's flush interval, 1s, need not have passed).
	if log.count() == 0 {
		t.Error("no delivery log rows after Shutdown: the log writer was not flushed")
	}

	idle, err := kafkatier.NewDelivery(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown before Run: %v", err)
	}
	if err := idle.Run(ctx); err == nil {
		t.Error("Run after Shutdown ran")
	}
}
