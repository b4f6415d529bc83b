package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestGroupCommitMergesWaitingCalls: calls that arrive while an insert
// runs go out together in the next one, each once, in arrival order.
func TestGroupCommitMergesWaitingCalls(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sent [][]int
	g := newGroupCommit(100, 0, nil, nil, func(ctx context.Context, parts [][]int) error {
		mu.Lock()
		sent = append(sent, flatten(parts))
		first := len(sent) == 1
		mu.Unlock()
		if first {
			<-release // hold the first insert until the others queue
		}
		return nil
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.write(context.Background(), []int{0}); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 1 })
	for i := 1; i <= 5; i++ {
		wg.Go(func() {
			if err := g.write(context.Background(), []int{i}); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 5 })
	close(release)
	wg.Wait()
	if len(sent) != 2 {
		t.Fatalf("inserts %v: want the first alone, then the five waiting ones in one", sent)
	}
	second := slices.Clone(sent[1])
	slices.Sort(second)
	if !slices.Equal(sent[0], []int{0}) || !slices.Equal(second, []int{1, 2, 3, 4, 5}) {
		t.Errorf("inserts %v", sent)
	}
}

// TestGroupCommitCapsRows: calls past maxRows wait for the next insert.
func TestGroupCommitCapsRows(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	g := newGroupCommit(4, 0, nil, nil, func(ctx context.Context, parts [][]int) error {
		mu.Lock()
		sizes = append(sizes, len(flatten(parts)))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release
		}
		return nil
	})
	var wg sync.WaitGroup
	wg.Go(func() { g.write(context.Background(), []int{0}) })
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for range 3 {
		wg.Go(func() { g.write(context.Background(), []int{1, 2, 3}) })
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 3 })
	close(release)
	wg.Wait()
	if !slices.Equal(sizes, []int{1, 3, 3, 3}) {
		t.Errorf("insert sizes %v: want 1, then 3 at a time (a cap of 4 rows)", sizes)
	}
}

// TestGroupCommitErrorsReachEveryCall: a failed insert fails every call it
// carried; the next insert is a fresh one.
func TestGroupCommitErrorsReachEveryCall(t *testing.T) {
	boom := errors.New("boom")
	release := make(chan struct{})
	calls := 0
	g := newGroupCommit(100, 0, nil, nil, func(ctx context.Context, parts [][]int) error {
		calls++
		if calls == 1 {
			<-release
			return nil
		}
		return boom
	})
	var wg sync.WaitGroup
	wg.Go(func() { g.write(context.Background(), []int{0}) })
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.busy })
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = g.write(context.Background(), []int{i}) })
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 3 })
	close(release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Errorf("call %d: %v, want the insert's error", i, err)
		}
	}
	if calls != 2 {
		t.Errorf("%d inserts, want 2", calls)
	}
}

// TestGroupCommitCancelledCaller: a call whose context ended while it
// waited is left out of the insert; one whose context ends during the
// insert cancels it.
func TestGroupCommitCancelledCaller(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sent [][]int
	g := newGroupCommit(100, 0, nil, nil, func(ctx context.Context, parts [][]int) error {
		mu.Lock()
		sent = append(sent, flatten(parts))
		n := len(sent)
		mu.Unlock()
		if n == 1 {
			<-release
			return nil
		}
		<-ctx.Done() // the second insert waits to be cancelled
		return ctx.Err()
	})
	var wg sync.WaitGroup
	wg.Go(func() { g.write(context.Background(), []int{0}) })
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.busy })
	gone, cancelGone := context.WithCancel(context.Background())
	var goneErr error
	wg.Go(func() { goneErr = g.write(gone, []int{1}) })
	later, cancelLater := context.WithCancel(context.Background())
	var laterErr error
	wg.Go(func() { laterErr = g.write(later, []int{2}) })
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 2 })
	cancelGone()
	close(release)
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(sent) == 2 })
	cancelLater()
	wg.Wait()
	if !errors.Is(goneErr, context.Canceled) || !errors.Is(laterErr, context.Canceled) {
		t.Errorf("errors %v, %v: want both cancelled", goneErr, laterErr)
	}
	if len(sent) != 2 || !slices.Equal(sent[1], []int{2}) {
		t.Errorf("inserts %v: want the cancelled call left out of the second", sent)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// writerCtx is a write of Kafka partition p of topic "t".
func writerCtx(p int) context.Context {
	return pipeline.WithWriter(context.Background(), "t", p)
}

// anyWriter expects every busy partition.
func anyWriter(pipeline.Writer, int) bool { return true }

// TestGroupCommitLingers: the sending caller waits (up to linger) until
// each busy partition has queued a call, or maxRows are queued; with one
// busy partition it does not wait.
func TestGroupCommitLingers(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	set := newWriterSet()
	g := newGroupCommit(100, time.Hour, set, anyWriter, func(ctx context.Context, parts [][]int) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(flatten(parts)))
		return nil
	})
	// A lone writer goes at once (or this test would wait an hour).
	set.wrote(pipeline.Writer{Topic: "t", Partition: 0})
	g.write(writerCtx(0), []int{0})
	for p := range 3 {
		set.wrote(pipeline.Writer{Topic: "t", Partition: p})
	}
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Go(func() { g.write(writerCtx(p), []int{p}) })
		time.Sleep(10 * time.Millisecond) // one after the other
	}
	wg.Wait()
	// With a cap of 2 rows, two calls are enough to send.
	g.maxRows = 2
	for p := range 2 {
		wg.Go(func() { g.write(writerCtx(p), []int{p}) })
	}
	wg.Wait()
	if !slices.Equal(sizes, []int{1, 3, 2}) {
		t.Errorf("insert sizes %v: want 1, then the three later calls in one insert, then two", sizes)
	}
}

// TestGroupCommitLingerEnds: a busy partition that never comes holds the
// others up for linger only.
func TestGroupCommitLingerEnds(t *testing.T) {
	var sizes []int
	set := newWriterSet()
	set.wrote(pipeline.Writer{Topic: "t", Partition: 0})
	set.wrote(pipeline.Writer{Topic: "t", Partition: 1})
	g := newGroupCommit(100, 50*time.Millisecond, set, anyWriter, func(ctx context.Context, parts [][]int) error {
		sizes = append(sizes, len(flatten(parts)))
		return nil
	})
	for i := range 3 {
		if err := g.write(writerCtx(0), []int{i}); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(sizes, []int{1, 1, 1}) {
		t.Errorf("insert sizes %v", sizes)
	}
}

// TestGroupCommitsDoNotWaitForEachOther: partition 0 waits in the events
// commit for partition 1, which first writes its list changes: the list
// commit does not wait for partition 0 (waiting in another commit, it
// would not come before its next batch), so partition 1 gets through it
// and its events join partition 0's in one insert. When the list commit
// waited for every busy partition, the two waited for each other until
// their lingers ended (a second per batch in the ingest bench).
func TestGroupCommitsDoNotWaitForEachOther(t *testing.T) {
	set := newWriterSet()
	for p := range 2 {
		set.wrote(pipeline.Writer{Topic: "t", Partition: p})
	}
	var mu sync.Mutex
	var events, lists [][]int
	record := func(dst *[][]int) func(context.Context, [][]int) error {
		return func(_ context.Context, parts [][]int) error {
			mu.Lock()
			defer mu.Unlock()
			*dst = append(*dst, flatten(parts))
			return nil
		}
	}
	// An hour: a commit that waits for the other does not end this test.
	ev := newGroupCommit(100, time.Hour, set, anyWriter, record(&events))
	free := func(_ pipeline.Writer, parked int) bool { return parked == 0 }
	ls := newGroupCommit(100, time.Hour, set, free, record(&lists))

	var wg sync.WaitGroup
	wg.Go(func() { ev.write(writerCtx(0), []int{0}) })
	// Partition 0 is the events commit's sender, waiting for partition 1.
	waitFor(t, func() bool { ev.mu.Lock(); defer ev.mu.Unlock(); return len(ev.queue) == 1 && ev.busy })
	done := make(chan struct{})
	go func() {
		defer close(done)
		ls.write(writerCtx(1), []int{1})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the list commit waits for partition 0, which waits in the events commit")
	}
	ev.write(writerCtx(1), []int{1})
	wg.Wait()
	if len(lists) != 1 || !slices.Equal(lists[0], []int{1}) {
		t.Errorf("list inserts %v: want partition 1's alone", lists)
	}
	if len(events) != 1 || !slices.Equal(events[0], []int{0, 1}) {
		t.Errorf("events inserts %v: want both partitions' in one", events)
	}
}

// TestMergedInsertKeepsEachPartitionsSideRows: when the events of several
// Kafka partitions share one insert, the stats marks and message_index
// rows written before it (one insert each for all of them) name each
// row's own partition and offset, not the first call's.
func TestMergedInsertKeepsEachPartitionsSideRows(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	row := func(partition int, offset int64, email, msg string) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Partition: partition, Offset: offset, Event: "delivered",
			Email: email, EmailNorm: email, AccountID: "acme", Timestamp: 1764201600 + offset, SGMessageID: msg}}
	}
	parts := [][]pipeline.Row{
		{row(0, 10, "a@x.org", "m1"), row(0, 11, "a@x.org", "m1")},
		{row(1, 20, "b@x.org", "m2"), row(1, 25, "b@x.org", "m2")},
	}
	if err := s.insertEventsWithSides(ctx, &eventBlock{}, parts); err != nil {
		t.Fatal(err)
	}
	var marks []string
	rows, err := s.conn.Query(ctx, "SELECT kafka_partition, max(kafka_offset) FROM stats_marks WHERE kafka_topic = 't' GROUP BY kafka_partition ORDER BY kafka_partition")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p uint32
		var o uint64
		if err := rows.Scan(&p, &o); err != nil {
			t.Fatal(err)
		}
		marks = append(marks, fmt.Sprintf("%d:%d", p, o))
	}
	rows.Close()
	if want := []string{"0:11", "1:25"}; !slices.Equal(marks, want) {
		t.Errorf("stats marks (partition:offset) %v, want %v", marks, want)
	}
	var index []string
	rows, err = s.conn.Query(ctx, "SELECT kafka_partition, kind, key, toUInt32(first), toUInt32(last) FROM message_index ORDER BY kafka_partition, kind")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p, first, last uint32
		var kind, key string
		if err := rows.Scan(&p, &kind, &key, &first, &last); err != nil {
			t.Fatal(err)
		}
		index = append(index, fmt.Sprintf("%d %s %s +%d..+%d", p, kind, key, first-1764201600, last-1764201600))
	}
	rows.Close()
	if want := []string{"0 msg m1 +10..+11", "0 to a@x.org +10..+11", "1 msg m2 +20..+25", "1 to b@x.org +20..+25"}; !slices.Equal(index, want) {
		t.Errorf("message_index rows %q, want %q", index, want)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&n); err != nil || n != 4 {
		t.Errorf("events: %d, %v; want 4", n, err)
	}
}
