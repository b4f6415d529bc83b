package consumer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
)

// slowToRecover fails every Handle until its first call is more than
// outage old, then succeeds only with a live context.
type slowToRecover struct {
	outage time.Duration
	mu     sync.Mutex
	first  time.Time
	calls  int
	done   chan error
}

func (h *slowToRecover) Assigned(ctx context.Context, topic string, partition int) (int64, error) {
	return 0, nil
}

func (h *slowToRecover) Handle(ctx context.Context, topic string, partition int, batch []pipeline.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	if h.first.IsZero() {
		h.first = time.Now()
	}
	if time.Since(h.first) < h.outage {
		return context.DeadlineExceeded // the sink is down
	}
	select {
	case h.done <- ctx.Err():
	default:
	}
	return ctx.Err()
}

// TestRetryAfterOutageLongerThanHandleTimeout: a batch that fails for
// longer than HandleTimeout is handed a live context once the sink is back
// (each attempt has its own timeout), so it lands.
func TestRetryAfterOutageLongerThanHandleTimeout(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	w := &kafka.Writer{Addr: kafka.TCP(testenv.Brokers(brokers)...), Topic: topic, Transport: &kafka.Transport{}}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	h := &slowToRecover{outage: 1500 * time.Millisecond, done: make(chan error, 1)}
	g, err := NewGroup(GroupConfig{
		Conn: Conn{Brokers: testenv.Brokers(brokers)}, Topic: topic, GroupID: topic + ".g",
		HandleTimeout: 500 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxWait: 50 * time.Millisecond,
	}, h)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go g.Run(runCtx)
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("after an outage longer than HandleTimeout the retry got a dead context: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the batch was never handled after the outage")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.calls < 3 {
		t.Errorf("%d Handle calls; want retries during the outage", h.calls)
	}
}
