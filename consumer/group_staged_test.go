package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// holdingStager is a Stager whose batch holding offset hold is not done
// until release is closed, and whose batch holding offset failOnce fails
// its first wait.
type holdingStager struct {
	hold, failOnce int64
	release        chan struct{}

	mu          sync.Mutex
	staged      [][]int64 // offsets of each Stage call, in call order
	failed      bool
	ctxs        []context.Context // of each Stage call
	outstanding int               // staged, context live, as of the last Stage call
	most        int
}

func (h *holdingStager) Assigned(context.Context, string, int) (int64, error) { return 0, nil }

func (h *holdingStager) Handle(context.Context, string, int, []Message) error {
	return errors.New("Handle called on a Stager")
}

func (h *holdingStager) Stage(ctx context.Context, _ string, _ int, msgs []Message) (func(context.Context) error, error) {
	var offs []int64
	for _, m := range msgs {
		offs = append(offs, m.Offset)
	}
	// The group ends a batch's context once it is done, failed or
	// abandoned: the window is the staged batches whose context is live.
	h.mu.Lock()
	h.staged = append(h.staged, offs)
	h.ctxs = append(h.ctxs, ctx)
	live := 0
	for _, c := range h.ctxs {
		if c.Err() == nil {
			live++
		}
	}
	h.outstanding = live
	h.most = max(h.most, live)
	h.mu.Unlock()
	return func(ctx context.Context) error {
		if slices.Contains(offs, h.hold) {
			select {
			case <-h.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if slices.Contains(offs, h.failOnce) && !h.failed {
			h.failed = true
			return errors.New("a delivery failed")
		}
		return nil
	}, nil
}

// stagedCount counts the Stage calls whose batch holds offset off.
func (h *holdingStager) stagedCount(off int64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, offs := range h.staged {
		if slices.Contains(offs, off) {
			n++
		}
	}
	return n
}

func (h *holdingStager) window() (outstanding, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.outstanding, h.most
}

// TestStagerWindow: a Stager gets the next batches while an earlier one
// is not done, at most MaxStaged at once; nothing is committed past a
// batch that is not done; a batch whose wait fails is staged again; and
// once all are done, all is committed.
func TestStagerWindow(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	addrs := testenv.Brokers(brokers)
	w, err := NewWriter(Conn{Brokers: addrs}, topic, WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	write := func(from, to int) {
		t.Helper()
		var msgs []kafka.Message
		for i := from; i < to; i++ {
			msgs = append(msgs, kafka.Message{Value: fmt.Appendf(nil, `{"n":%d}`, i)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	committed := func() int64 {
		t.Helper()
		c := &kafka.Client{Addr: kafka.TCP(addrs...)}
		resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: topic + ".g", Topics: map[string][]int{topic: {0}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Topics[topic] {
			return p.CommittedOffset
		}
		return -1
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

	h := &holdingStager{hold: 0, failOnce: 5, release: make(chan struct{})}
	const window = 3
	g, err := NewGroup(GroupConfig{Conn: Conn{Brokers: addrs}, Topic: topic, GroupID: topic + ".g",
		MaxBatchMessages: 5, MaxWait: 50 * time.Millisecond, MaxStaged: window, RetryMax: 200 * time.Millisecond}, h)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g.Run(runCtx) }()
	release := sync.OnceFunc(func() { close(h.release) })
	defer func() { release(); stop(); <-done }()

	write(0, 5)
	waitFor("the first batch staged", func() bool { return h.stagedCount(0) == 1 })
	write(5, 10)
	waitFor("a later batch staged while the first is not done", func() bool { return h.stagedCount(9) == 1 })
	write(10, 40)
	waitFor("the window full", func() bool { _, most := h.window(); return most >= window })
	time.Sleep(300 * time.Millisecond) // a window that leaked would stage more now
	if off := committed(); off > 0 {
		t.Errorf("committed offset %d while the batch at offset 0 is not done; want none", off)
	}
	if _, most := h.window(); most > window {
		t.Errorf("%d batches staged at once, want at most MaxStaged %d", most, window)
	}
	release()
	waitFor("everything committed", func() bool { return committed() == 40 })
	if n := h.stagedCount(5); n != 2 {
		t.Errorf("the batch whose wait failed was staged %d times, want 2", n)
	}
	if _, most := h.window(); most > window {
		t.Errorf("%d batches staged at once, want at most MaxStaged %d", most, window)
	}
	for i := int64(0); i < 40; i++ {
		if h.stagedCount(i) == 0 {
			t.Errorf("offset %d never staged", i)
		}
	}
}

// overlapStager stages each message as its own batch; the batch at offset
// fail fails once, and the first staging of the batch after it takes a
// second, so a second Stage call for the partition in the meantime shows.
type overlapStager struct {
	fail int64

	mu      sync.Mutex
	in      int // Stage calls running
	most    int
	failed  bool
	slowed  bool
	staged  map[int64]int
	maxDone int64
}

func (s *overlapStager) Assigned(context.Context, string, int) (int64, error) { return 0, nil }

func (s *overlapStager) Handle(context.Context, string, int, []Message) error {
	return errors.New("Handle called on a Stager")
}

func (s *overlapStager) Stage(ctx context.Context, _ string, _ int, msgs []Message) (func(context.Context) error, error) {
	s.mu.Lock()
	s.in++
	s.most = max(s.most, s.in)
	off := msgs[0].Offset
	s.staged[off]++
	slow := off == s.fail+1 && !s.slowed
	s.slowed = s.slowed || slow
	s.mu.Unlock()
	if slow {
		time.Sleep(time.Second)
	}
	s.mu.Lock()
	s.in--
	s.mu.Unlock()
	return func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if off == s.fail && !s.failed {
			s.failed = true
			return errors.New("a delivery failed")
		}
		return nil
	}, nil
}

// TestStagerStagesOneAtATime: a Stager is never asked to stage two
// batches of a partition at once, even when a batch fails while a later
// one is being staged. The webhook handler decodes each partition with
// one decoder that keeps per-call state; b02b9a4's group staged the
// failed batch again from its committer while its fetcher was staging
// the next, so two decodes could share that state.
func TestStagerStagesOneAtATime(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	addrs := testenv.Brokers(brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := NewWriter(Conn{Brokers: addrs}, topic, WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var msgs []kafka.Message
	for i := range 6 {
		msgs = append(msgs, kafka.Message{Value: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	s := &overlapStager{fail: 2, staged: map[int64]int{}}
	g, err := NewGroup(GroupConfig{Conn: Conn{Brokers: addrs}, Topic: topic, GroupID: topic + ".g",
		MaxBatchMessages: 1, MaxWait: 20 * time.Millisecond, MaxStaged: 4, RetryMax: 200 * time.Millisecond}, s)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); g.Run(runCtx) }()
	defer func() { stop(); <-done }()
	c := &kafka.Client{Addr: kafka.TCP(addrs...)}
	for {
		resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: topic + ".g", Topics: map[string][]int{topic: {0}}})
		if err == nil && len(resp.Topics[topic]) == 1 && resp.Topics[topic][0].CommittedOffset == 6 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("not everything committed within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.most > 1 {
		t.Errorf("%d Stage calls for one partition ran at once, want 1", s.most)
	}
	if s.staged[2] != 2 {
		t.Errorf("the failed batch was staged %d times, want 2", s.staged[2])
	}
}
