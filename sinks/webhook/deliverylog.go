package webhook

import (
	"context"
	"log/slog"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

// DeliveryStore writes delivery log rows, one insert per call.
type DeliveryStore interface {
	WriteDeliveries(ctx context.Context, rows []subscription.Delivery) error
}

// LogWriter buffers delivery log rows and writes them in batches. Its
// buffer is bounded: when it is full (the store is down or slow) rows are
// dropped and counted, never blocking delivery. Rows still buffered when
// the process dies are lost; the log is for people, delivery does not
// depend on it.
type LogWriter struct {
	store   DeliveryStore
	ch      chan subscription.Delivery
	every   time.Duration
	max     int
	log     *slog.Logger
	metrics *Metrics
	done    chan struct{}
}

// NewLogWriter returns a writer holding at most capacity rows, writing
// every flushEvery or maxRows rows, whichever comes first. Call Run.
func NewLogWriter(store DeliveryStore, capacity, maxRows int, flushEvery time.Duration, log *slog.Logger, m *Metrics) *LogWriter {
	if capacity <= 0 {
		capacity = 100_000
	}
	if maxRows <= 0 {
		maxRows = 10_000
	}
	if flushEvery <= 0 {
		flushEvery = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &LogWriter{store: store, ch: make(chan subscription.Delivery, capacity), every: flushEvery, max: maxRows, log: log, metrics: m, done: make(chan struct{})}
}

// Record queues a row; it never blocks.
func (w *LogWriter) Record(d subscription.Delivery) {
	select {
	case w.ch <- d:
	default:
		w.metrics.logDropped.Inc()
	}
}

// Run writes rows until ctx ends, then flushes what is buffered (for at
// most five seconds) and returns.
func (w *LogWriter) Run(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(w.every)
	defer t.Stop()
	buf := make([]subscription.Delivery, 0, w.max)
	flush := func(ctx context.Context) {
		if len(buf) == 0 {
			return
		}
		if err := w.store.WriteDeliveries(ctx, buf); err != nil {
			w.metrics.logDropped.Add(float64(len(buf)))
			w.log.Warn("webhook delivery log: write failed; rows dropped", "rows", len(buf), "err", err)
		}
		clear(buf)
		buf = buf[:0]
	}
	for {
		select {
		case d := <-w.ch:
			buf = append(buf, d)
			if len(buf) >= w.max {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case d := <-w.ch:
					buf = append(buf, d)
					if len(buf) >= w.max {
						flush(fctx)
					}
					continue
				default:
				}
				break
			}
			flush(fctx)
			return
		}
	}
}

// Done is closed when Run has returned.
func (w *LogWriter) Done() <-chan struct{} { return w.done }
