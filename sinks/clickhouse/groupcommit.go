package clickhouse

import (
	"context"
	"sync"
	"time"
)

// groupCommit merges concurrent writes to one table into one insert (group
// commit): callers that arrive while an insert is running queue up, and
// when it ends the first of them sends every queued call's rows as one
// block. While several goroutines write (writers says how many: the Kafka
// partitions the worker is busy with), the sending caller first waits up to
// linger for a call of each (or until maxRows are queued); a lone writer
// (an API call, a single partition) never waits. Under load (one goroutine per Kafka
// partition) a worker makes one part where it made one per partition, which
// is what costs ClickHouse most: each part is a file per column, written,
// then merged. The partitions' goroutines leave an insert together, so
// their next batches tend to arrive together too.
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

	// writers, when set, is how many goroutines write at the moment (the
	// Kafka partitions this worker is busy with): the sending caller waits
	// (up to linger) until that many calls are queued.
	writers func() int

	mu      sync.Mutex
	busy    bool
	queue   []*commitCall[T]
	queued  int           // rows in queue
	arrived chan struct{} // signalled on every call queued
}

type commitCall[T any] struct {
	ctx  context.Context
	rows []T
	err  error
	lead bool // handed the sending over, rather than done
	done chan struct{}
}

func newGroupCommit[T any](maxRows int, linger time.Duration, writers func() int, send func(ctx context.Context, parts [][]T) error) *groupCommit[T] {
	return &groupCommit[T]{send: send, maxRows: maxRows, linger: linger, writers: writers, arrived: make(chan struct{}, 1)}
}

// write returns once rows are stored (nil) or not (the error).
func (g *groupCommit[T]) write(ctx context.Context, rows []T) error {
	c := &commitCall[T]{ctx: ctx, rows: rows, done: make(chan struct{})}
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
	if g.linger > 0 && g.writers != nil {
		timer := time.NewTimer(g.linger)
		expired := false
		for !expired && len(g.queue) < g.writers() && g.queued < g.maxRows && ctx.Err() == nil {
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
