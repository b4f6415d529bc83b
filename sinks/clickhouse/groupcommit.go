package clickhouse

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/pipeline"
)

// groupCommit merges concurrent writes to one table into one insert (group
// commit): callers that arrive while an insert is running queue up, and
// when it ends the first of them sends every queued call's rows as one
// block. While several Kafka partitions write (writerSet: those that wrote
// events within activeWindow), the sending caller first waits up to linger
// for a call of each one it expects (expect), or until maxRows are queued;
// a lone writer (an API call, a single partition) never waits. Under load
// (one goroutine per Kafka partition) a worker makes one part where it made
// one per partition, which is what costs ClickHouse most: each part is a
// file per column, written, then merged. The partitions' goroutines leave
// an insert together, so their next batches tend to arrive together too.
//
// A partition writes its list changes and recipient history (concurrently)
// before its events, so the list-change and history commits expect only
// partitions that wait in none of the Store's commits: one waiting in the
// events commit comes back with its next batch only. Expecting it anyway
// made two commits wait for each other: with partitions out of step, half
// of them waited in the events commit for the other half, which waited in
// the list-change and history commits for the first, until both lingers
// ended, every batch (a full second per batch: 15,000 instead of 40,000
// events/s in the ingest bench; 29355a2 had it too). The events commit
// expects every busy partition of its shard that has not queued a call.
// Partitions are told apart by topic too (pipeline.WriterOf): with
// re-routing, TOPIC.routed's partition p is a writer of its own (counted by
// number alone, it was one with TOPIC's p, and a worker of 8 partitions
// made an insert of each 4 calls).
//
// Atomicity is the block's: the rows of every merged call land together or
// not at all, and every call gets the insert's error. The pipeline's
// guarantees need no more than that (a failed call re-reads its partition's
// marks, which count rows by partition, whatever block brought them). A
// call whose context ends before its rows are sent gets the context's error
// and is left out; one that ends during the insert cancels it for all (the
// others retry), so a revoked partition's rows are never written after its
// caller gave up, as without merging.
type groupCommit[T any] struct {
	// send inserts the rows of parts as one block; only one send runs at
	// a time.
	send func(ctx context.Context, parts [][]T) error
	// maxRows caps the rows of one insert (the calls past it wait for the
	// next); a single larger call still goes alone.
	maxRows int
	// linger is the longest the sending caller waits for others.
	linger time.Duration

	// set, when not nil, is the Kafka partitions writing through the
	// Store's commits: the sending caller waits (up to linger) while one
	// that expect accepts (given its calls inside any commit, parked) has
	// not queued a call here.
	set    *writerSet
	expect func(w pipeline.Writer, parked int) bool

	mu      sync.Mutex
	busy    bool
	queue   []*commitCall[T]
	queued  int           // rows in queue
	arrived chan struct{} // signalled on every call queued
}

type commitCall[T any] struct {
	ctx    context.Context
	writer pipeline.Writer
	keyed  bool // writer is set (pipeline.WriterOf)
	rows   []T
	err    error
	lead   bool // handed the sending over, rather than done
	done   chan struct{}
}

func newGroupCommit[T any](maxRows int, linger time.Duration, set *writerSet, expect func(pipeline.Writer, int) bool, send func(ctx context.Context, parts [][]T) error) *groupCommit[T] {
	g := &groupCommit[T]{send: send, maxRows: maxRows, linger: linger, set: set, expect: expect, arrived: make(chan struct{}, 1)}
	if set != nil {
		set.watch(g.arrived)
	}
	return g
}

// write returns once rows are stored (nil) or not (the error).
func (g *groupCommit[T]) write(ctx context.Context, rows []T) error {
	c := &commitCall[T]{ctx: ctx, rows: rows, done: make(chan struct{})}
	if g.set != nil {
		if c.writer, c.keyed = pipeline.WriterOf(ctx); c.keyed {
			g.set.park(c.writer, 1)
			defer g.set.park(c.writer, -1)
		}
	}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	g.queued += len(rows)
	select {
	case g.arrived <- struct{}{}:
	default:
	}
	if g.busy {
		g.mu.Unlock()
		<-c.done
		if !c.lead {
			return c.err
		}
	} else {
		g.busy = true
		g.mu.Unlock()
	}
	// c sends: its own rows and those of the calls queued before it and
	// after it, up to maxRows.
	g.mu.Lock()
	if g.linger > 0 && g.set != nil {
		timer := time.NewTimer(g.linger)
		expired := false
		for !expired && g.queued < g.maxRows && ctx.Err() == nil && g.awaits() {
			g.mu.Unlock()
			select {
			case <-g.arrived:
			case <-timer.C:
				expired = true
			case <-ctx.Done():
			}
			g.mu.Lock()
		}
		timer.Stop()
	}
	n, rowCount := 0, 0
	for n < len(g.queue) && (n == 0 || rowCount+len(g.queue[n].rows) <= g.maxRows) {
		rowCount += len(g.queue[n].rows)
		n++
	}
	calls := g.queue[:n:n]
	g.queue = append([]*commitCall[T](nil), g.queue[n:]...)
	g.queued -= rowCount
	g.mu.Unlock()

	g.flush(calls)
	for _, x := range calls {
		if x != c {
			close(x.done)
		}
	}
	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		close(next.done)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	return c.err
}

// flush sends the rows of calls whose context is still live, as one block,
// and sets every call's error.
func (g *groupCommit[T]) flush(calls []*commitCall[T]) {
	live := make([]*commitCall[T], 0, len(calls))
	parts := make([][]T, 0, len(calls))
	for _, x := range calls {
		if err := x.ctx.Err(); err != nil {
			x.err = err
			continue
		}
		live = append(live, x)
		parts = append(parts, x.rows)
	}
	if len(live) == 0 {
		return
	}
	// The insert ends when any caller gives up (see the type's doc); it
	// keeps the first caller's values.
	ctx, cancel := context.WithCancel(context.WithoutCancel(live[0].ctx))
	defer cancel()
	for _, x := range live {
		defer context.AfterFunc(x.ctx, cancel)()
	}
	err := g.send(ctx, parts)
	for _, x := range live {
		x.err = err
	}
}

// awaits says whether a partition the commit expects has not queued a call
// (g.mu held).
func (g *groupCommit[T]) awaits() bool {
	return g.set.awaits(g.expect, func(w pipeline.Writer) bool {
		return slices.ContainsFunc(g.queue, func(c *commitCall[T]) bool { return c.keyed && c.writer == w })
	})
}

// writerSet is the Kafka partitions writing through a Store's group
// commits: those busy (an events write within activeWindow) and, for
// each, its calls inside any of the commits (queued, sending or waiting
// for others).
type writerSet struct {
	mu     sync.Mutex
	active map[pipeline.Writer]time.Time // last events write
	parked map[pipeline.Writer]int
	wake   []chan struct{} // the commits' arrived
}

func newWriterSet() *writerSet {
	return &writerSet{active: map[pipeline.Writer]time.Time{}, parked: map[pipeline.Writer]int{}}
}

// watch has wake signalled whenever a partition enters or leaves a commit.
func (s *writerSet) watch(wake chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wake = append(s.wake, wake)
}

// wrote marks w busy.
func (s *writerSet) wrote(w pipeline.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active[w] = time.Now()
}

// park counts a call of w entering (1) or leaving (-1) a commit, and wakes
// the commits' waiting callers to look again.
func (s *writerSet) park(w pipeline.Writer, n int) {
	s.mu.Lock()
	if s.parked[w] += n; s.parked[w] <= 0 {
		delete(s.parked, w)
	}
	wake := s.wake
	s.mu.Unlock()
	for _, c := range wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// awaits says whether a busy partition that expect accepts has no call
// queued (queued says).
func (s *writerSet) awaits(expect func(pipeline.Writer, int) bool, queued func(pipeline.Writer) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for w, at := range s.active {
		if now.Sub(at) > activeWindow {
			delete(s.active, w)
			continue
		}
		if expect(w, s.parked[w]) && !queued(w) {
			return true
		}
	}
	return false
}
