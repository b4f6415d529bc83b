package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
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

func (h *slowToRecover) Handle(ctx context.Context, topic string, partition int, batch []Message) error {
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
	w, err := NewWriter(Conn{Brokers: testenv.Brokers(brokers)}, topic, WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	h := &slowToRecover{outage: 1500 * time.Millisecond, done: make(chan error, 1)}
	reg := prometheus.NewRegistry()
	group := topic + ".g"
	started := time.Now()
	g, err := NewGroup(GroupConfig{
		Conn: Conn{Brokers: testenv.Brokers(brokers)}, Topic: topic, GroupID: group,
		HandleTimeout: 500 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxWait: 50 * time.Millisecond,
		Metrics: NewMetrics(reg),
	}, h)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- g.Run(runCtx) }()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("after an outage longer than HandleTimeout the retry got a dead context: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the batch was never handled after the outage")
	}
	h.mu.Lock()
	calls := h.calls
	h.mu.Unlock()
	if calls < 3 {
		t.Errorf("%d Handle calls; want retries during the outage", calls)
	}

	// The metrics an operator alerts on: retries of the group, and once the
	// batch is committed, no lag and a fresh commit time for the partition.
	part := prometheus.Labels{"group": group, "topic": topic, "partition": "0"}
	if n := value(g.cfg.Metrics.retries.WithLabelValues(group)); n < 2 {
		t.Errorf("bouncer_consumer_batch_retries_total{group=%q} = %v; want the retries counted", group, n)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		lag := value(g.cfg.Metrics.lag.With(part))
		committed := value(g.cfg.Metrics.lastCommit.With(part))
		if lag == 0 && committed >= float64(started.Unix()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the commit: lag %v, last commit %v; want 0 and a time after %d", lag, committed, started.Unix())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once the member stops owning the partition its series go, so
	// another owner's figures are never added to stale ones.
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "bouncer_consumer_lag_messages", "bouncer_consumer_last_commit_timestamp_seconds":
			t.Errorf("after the member stopped: %d series of %s; want none", len(mf.GetMetric()), mf.GetName())
		}
	}
}

// value reads a gauge or counter.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}

// unreachableReplica fails Assigned with a replica's error until healed.
type unreachableReplica struct {
	mu      sync.Mutex
	healed  bool
	handled chan struct{}
}

var errReplica = errors.New("shard 1: clickhouse replica unreachable: 127.0.0.1:9 (connection refused)")

func (h *unreachableReplica) Assigned(ctx context.Context, topic string, partition int) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.healed {
		return 0, errReplica
	}
	return 0, nil
}

func (h *unreachableReplica) Handle(ctx context.Context, topic string, partition int, batch []Message) error {
	select {
	case h.handled <- struct{}{}:
	default:
	}
	return nil
}

// TestWaitingSaysWhy: while a partition's resume point cannot be read, the
// group's Waiting (what /readyz shows) names the partition and the error;
// once it can, Waiting is nil and the partition is consumed.
func TestWaitingSaysWhy(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	w, err := NewWriter(Conn{Brokers: testenv.Brokers(brokers)}, topic, WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	h := &unreachableReplica{handled: make(chan struct{}, 1)}
	g, err := NewGroup(GroupConfig{
		Conn: Conn{Brokers: testenv.Brokers(brokers)}, Topic: topic, GroupID: topic + ".g",
		RetryMax: 100 * time.Millisecond, MaxWait: 50 * time.Millisecond,
	}, h)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- g.Run(runCtx) }()
	var why error
	for why == nil && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		why = g.Waiting()
	}
	want := "partition 0 of " + topic + " waits for its resume point: " + errReplica.Error()
	if why == nil || why.Error() != want || !errors.Is(why, errReplica) {
		t.Fatalf("Waiting() = %v; want %q", why, want)
	}
	h.mu.Lock()
	h.healed = true
	h.mu.Unlock()
	select {
	case <-h.handled:
	case <-ctx.Done():
		t.Fatal("the partition was never consumed after its resume point could be read")
	}
	if err := g.Waiting(); err != nil {
		t.Errorf("Waiting() = %v after the resume point was read; want nil", err)
	}
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}

// chanHandler hands every batch to a channel.
type chanHandler chan []Message

func (h chanHandler) Assigned(context.Context, string, int) (int64, error) { return 0, nil }

func (h chanHandler) Handle(ctx context.Context, _ string, _ int, msgs []Message) error {
	select {
	case h <- msgs:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestGroupJoinedBeforeTopicExists: a member that joined while its topic
// did not exist yet (a worker starting right after creating the webhook
// dead-letter topic) got no partitions and kept that assignment for good.
// It must take the topic's partitions once the topic appears.
func TestGroupJoinedBeforeTopicExists(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1) + ".late"
	conn := Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		c, err := kafka.Dial("tcp", conn.Brokers[0])
		if err == nil {
			defer c.Close()
			c.DeleteTopics(topic)
		}
	})
	got := make(chanHandler, 16)
	g, err := NewGroup(GroupConfig{Conn: conn, Topic: topic, GroupID: topic + ".g", MaxWait: 50 * time.Millisecond, SessionTimeout: 6 * time.Second}, got)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g.Run(runCtx) }()
	defer func() { stop(); <-done }()
	select {
	case <-g.Ready():
	case <-ctx.Done():
		t.Fatal("the group never joined")
	}
	if err := EnsureTopic(ctx, conn, topic, 1); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(Conn{Brokers: conn.Brokers}, topic, WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case <-got:
	case <-wait.C:
		t.Fatal("the message was not handled within 60s: the member kept the empty assignment it got before the topic existed")
	}
}
