package webhook

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/sony/gobreaker/v2"
)

// lane is one endpoint's share of the node: a bounded queue of events and
// batches, an in-flight limit that adapts (AIMD), and a circuit breaker.
// Only its own goroutine starts sends; sends run in their own goroutines.
type lane struct {
	d  *Dispatcher
	id string
	// account owns the endpoint (kept for the batches given up after a
	// delete).
	account string
	// ep is the endpoint as last read (nil once deleted).
	ep atomic.Pointer[subscription.Webhook]
	br *gobreaker.TwoStepCircuitBreaker[struct{}]

	kick chan struct{}
	// timeoutsInRow: two timeouts in a row open the circuit at once (a
	// hanging endpoint costs an attempt timeout per failure).
	timeoutsInRow atomic.Int32

	mu           sync.Mutex
	pending      []pendingEvent // fresh events not yet in a batch
	pendingBytes int
	pendingSince time.Time
	ready        []*job // batches waiting for a send slot
	queued       int    // events in pending and ready
	inflight     int
	// slow counts attempts running longer than SlowAfter: while any does,
	// new batches are parked rather than queued behind them.
	slow int
	// suspect: an attempt ran past SlowAfter and no attempt succeeded
	// since; new batches are parked (the retry tiers try the endpoint)
	// rather than sent from the consumer's path.
	suspect      bool
	limit        float64
	lastOK       time.Time
	failingSince time.Time
	// disabledAt is when this node disabled the endpoint (zero: it did
	// not); the registry's copy catches up on its next read.
	disabledAt time.Time
	// closed: the endpoint was deleted and the lane drained and stopped
	// (release); add and addBatch refuse, so their callers park instead.
	closed bool
}

type pendingEvent struct {
	raw json.RawMessage
	ts  int64
	t   *tracker
}

func newLane(d *Dispatcher, ep *subscription.Webhook) *lane {
	l := &lane{d: d, id: ep.ID, account: ep.AccountID, kick: make(chan struct{}, 1), limit: min(2, float64(d.cfg.MaxInFlight))}
	l.ep.Store(ep)
	l.br = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        ep.ID,
		MaxRequests: 1,
		Timeout:     d.cfg.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(d.cfg.BreakerFailures) || l.timeoutsInRow.Load() >= 2
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			d.log.Info("webhook endpoint circuit", "endpoint", name, "from", from.String(), "to", to.String())
		},
	})
	return l
}

// update takes a fresh registry copy of the endpoint and returns the one
// delivery should use: a disable this node made and the registry does not
// show yet still holds, unless the customer changed the endpoint since.
func (l *lane) update(ep *subscription.Webhook) *subscription.Webhook {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.disabledAt.IsZero() && ep.DisabledAt.IsZero() {
		if ep.UpdatedAt.After(l.disabledAt) {
			l.disabledAt = time.Time{} // re-enabled: start afresh
			l.failingSince = time.Time{}
		} else {
			cp := *ep
			cp.DisabledAt = l.disabledAt
			cp.DisabledReason = "disabled by delivery"
			ep = &cp
		}
	}
	// A change to the subscription (re-enabled, new URL) restarts its
	// failing-since clock on every worker, not only on the one that
	// disabled it.
	if !l.failingSince.IsZero() && ep.UpdatedAt.After(l.failingSince) {
		l.failingSince = ep.UpdatedAt
	}
	l.ep.Store(ep)
	return ep
}

func (l *lane) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// add queues the first of evs that the lane's and the node's bounds
// leave room for, and returns how many it took.
func (l *lane) add(evs []pendingEvent) int {
	d := l.d
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0
	}
	n := d.reserve(min(len(evs), d.cfg.QueueEvents-l.queued))
	if n == 0 {
		l.mu.Unlock()
		return 0
	}
	evs = evs[:n]
	l.queued += n
	for _, e := range evs {
		if len(l.pending) == 0 {
			l.pendingSince = d.now()
		}
		if len(l.pending) >= d.cfg.MaxBatchEvents || (len(l.pending) > 0 && l.pendingBytes+len(e.raw) > d.cfg.MaxBatchBytes) {
			l.cut()
			l.pendingSince = d.now()
		}
		l.pending = append(l.pending, e)
		l.pendingBytes += len(e.raw) + 1
	}
	if len(l.pending) >= d.cfg.MaxBatchEvents {
		l.cut()
	}
	l.mu.Unlock()
	l.wake()
	return n
}

// sending reports whether the lane sends what it queues: its endpoint is
// active, its circuit closed, and no attempt ran past SlowAfter since its
// last success. Its queue then drains by sending (or, for batches that
// wait QueueTimeout, by parking).
func (l *lane) sending() bool {
	ep := l.ep.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	return ep != nil && ep.Active() && l.slow == 0 && !l.suspect && l.br.State() == gobreaker.StateClosed
}

// addBatch queues a parked batch for its next attempt; false when full.
func (l *lane) addBatch(j *job) bool {
	d := l.d
	n := len(j.b.Events)
	l.mu.Lock()
	if l.closed || l.queued+n > d.cfg.QueueEvents {
		l.mu.Unlock()
		return false
	}
	if got := d.reserve(n); got < n {
		d.queued.Add(-int64(got))
		l.mu.Unlock()
		return false
	}
	l.queued += n
	j.queuedAt = d.now()
	l.ready = append(l.ready, j)
	l.mu.Unlock()
	l.wake()
	return true
}

// cut turns the pending events into a batch; l.mu is held.
func (l *lane) cut() {
	if len(l.pending) == 0 {
		return
	}
	now := l.d.now()
	b := &Batch{WebhookID: NewWebhookID(), EndpointID: l.id, AccountID: l.account, Created: now,
		Events: make([]json.RawMessage, len(l.pending)), EventTimes: make([]int64, len(l.pending))}
	j := &job{b: b, queuedAt: now, fresh: true}
	for i, e := range l.pending {
		b.Events[i], b.EventTimes[i] = e.raw, e.ts
		if k := len(j.waiters); k > 0 && j.waiters[k-1].t == e.t {
			j.waiters[k-1].n++
		} else {
			j.waiters = append(j.waiters, waiter{e.t, 1})
		}
	}
	// A fresh batch's webhook-id is new, so it is not registered in
	// d.active (that would take d.mu under l.mu: the lock order is d.mu,
	// then l.mu).
	clear(l.pending)
	l.pending = l.pending[:0]
	l.pendingBytes = 0
	l.ready = append(l.ready, j)
}

// run starts sends as slots free up, cuts batches whose wait is over, and
// parks batches that waited too long or meet an open circuit. Once the
// endpoint is deleted, it gives up what is queued and, when no attempt is
// left running, stops (release).
func (l *lane) run(ctx context.Context) {
	d := l.d
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var park, send []*job
	for {
		now := d.now()
		l.mu.Lock()
		ep := l.ep.Load()
		if len(l.pending) > 0 && (ep == nil || now.Sub(l.pendingSince) >= d.cfg.MaxBatchWait) {
			l.cut()
		}
		closed := l.br.State() == gobreaker.StateClosed
		keep := l.ready[:0]
		for _, j := range l.ready {
			switch {
			case ep == nil || !ep.Active():
				park = append(park, j) // given up below
			case j.fresh && (!closed || l.slow > 0 || l.suspect), now.Sub(j.queuedAt) >= d.cfg.QueueTimeout:
				park = append(park, j)
			default:
				keep = append(keep, j)
			}
		}
		clear(l.ready[len(keep):])
		l.ready = keep
		for len(l.ready) > 0 && l.inflight < max(int(l.limit), 1) {
			send = append(send, l.ready[0])
			l.ready[0] = nil
			l.ready = l.ready[1:]
			l.inflight++
		}
		for _, j := range park {
			l.queued -= len(j.b.Events)
		}
		for _, j := range send {
			l.queued -= len(j.b.Events)
		}
		wait := time.Hour
		if len(l.pending) > 0 {
			wait = min(wait, d.cfg.MaxBatchWait-now.Sub(l.pendingSince))
		}
		if len(l.ready) > 0 {
			wait = min(wait, d.cfg.QueueTimeout-now.Sub(l.ready[0].queuedAt))
		}
		l.mu.Unlock()

		for _, j := range park {
			d.queued.Add(-int64(len(j.b.Events)))
			if ep == nil || !ep.Active() {
				l.giveUp(j, ep)
			} else {
				l.parkUntried(j)
			}
		}
		for _, j := range send {
			d.queued.Add(-int64(len(j.b.Events)))
			go l.send(ctx, j)
		}
		if len(park)+len(send) > 0 {
			d.roomFreed()
		}
		clear(park)
		clear(send)
		park, send = park[:0], send[:0]
		if ep == nil && l.release() {
			return
		}

		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-timer.C:
		}
	}
}

// release stops a deleted endpoint's lane once nothing is queued or
// sending: it leaves the dispatcher's lanes and refuses what comes later
// (callers holding it park instead, and the retry tier gives that up as
// deleted). It reports whether the lane stopped.
func (l *lane) release() bool {
	d := l.d
	d.mu.Lock()
	defer d.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ep.Load() != nil || len(l.pending) > 0 || len(l.ready) > 0 || l.inflight > 0 {
		return false
	}
	l.closed = true
	if d.lanes[l.id] == l {
		delete(d.lanes, l.id)
	}
	return true
}

// parkRejected parks a batch the open circuit did not let through. A
// retried batch moves one tier further each time, so batches of a dead
// endpoint do not cycle through the first tier every few seconds.
func (l *lane) parkRejected(j *job) {
	if j.fresh {
		l.parkUntried(j)
		return
	}
	delays := l.d.cfg.Schedule.Delays
	tier, due, ok := l.d.next(j.b.Attempts, j.retryAfter)
	if !ok {
		j.b.Reason = "retry schedule exhausted"
	} else if t := min(j.b.Tier+1, len(delays)-1); t > tier {
		tier, due = t, l.d.now().Add(delays[t])
	}
	j.b.Tier, j.b.Due = tier, due
	l.d.park(j)
}

// parkUntried parks a batch that was not attempted now (queue full, slow
// endpoint, open circuit) in the tier its attempts so far call for.
func (l *lane) parkUntried(j *job) {
	tier, due, ok := l.d.next(j.b.Attempts, j.retryAfter)
	if !ok {
		j.b.Reason = "retry schedule exhausted"
	}
	j.b.Tier, j.b.Due = tier, due
	l.d.park(j)
}

// giveUp sends a batch to the failed batches because its endpoint is
// disabled or deleted: nothing is dropped, a replay can bring it back.
func (l *lane) giveUp(j *job, ep *subscription.Webhook) {
	switch {
	case ep == nil:
		j.b.Reason = "endpoint deleted"
	case !ep.DisabledAt.IsZero():
		j.b.Reason = "endpoint disabled: " + ep.DisabledReason
	default:
		j.b.Reason = "endpoint switched off"
	}
	l.d.park(j)
}

// send makes one attempt and decides what follows.
func (l *lane) send(ctx context.Context, j *job) {
	d := l.d
	defer func() {
		l.mu.Lock()
		l.inflight--
		l.mu.Unlock()
		l.wake()
	}()
	ep := l.ep.Load()
	if ep == nil || !ep.Active() {
		l.giveUp(j, ep)
		return
	}
	done, err := l.br.Allow()
	if err != nil {
		l.parkRejected(j)
		return
	}
	j.b.Attempts++
	start := d.now()
	slow := time.AfterFunc(d.cfg.SlowAfter, func() {
		l.mu.Lock()
		j.mu.Lock()
		if !j.attemptDone {
			j.slowCounted = true
			l.slow++
			l.suspect = true
		}
		j.mu.Unlock()
		l.mu.Unlock()
		d.shadow(j, start)
		l.wake()
	})
	res := d.attempt(ctx, ep, j.b)
	slow.Stop()
	l.mu.Lock()
	j.mu.Lock()
	j.attemptDone = true
	shadowed := j.shadowed
	if j.slowCounted {
		j.slowCounted = false
		l.slow--
	}
	j.mu.Unlock()
	l.mu.Unlock()
	now := d.now()
	ok := res.class == ResultOK
	if res.class == ResultTimeout {
		l.timeoutsInRow.Add(1)
	} else {
		l.timeoutsInRow.Store(0)
	}
	if ok {
		done(nil)
	} else {
		done(errAttempt)
	}
	d.m.deliveries.WithLabelValues(res.class).Inc()
	d.m.attempt.Observe(res.took.Seconds())
	d.record(subscription.Delivery{EndpointID: j.b.EndpointID, AccountID: ep.AccountID, WebhookID: j.b.WebhookID,
		Attempt: j.b.Attempts, Result: res.class, Status: res.status, Duration: res.took,
		Response: res.response, Events: len(j.b.Events), Circuit: l.br.State().String(), At: now})

	l.mu.Lock()
	switch {
	case ok:
		l.limit = min(l.limit+1/max(l.limit, 1), float64(d.cfg.MaxInFlight))
		l.lastOK, l.failingSince, l.suspect = now, time.Time{}, false
	case res.class == ResultTimeout || res.status == 429 || res.status >= 500:
		l.limit = max(l.limit/2, 1)
	}
	if !ok && l.failingSince.IsZero() {
		l.failingSince = now
	}
	failingFor := now.Sub(l.failingSince)
	l.mu.Unlock()

	if ok {
		d.m.events.Add(float64(len(j.b.Events)))
		for _, ts := range j.b.EventTimes {
			d.m.endToEnd.Observe(max(now.Sub(time.Unix(ts, 0)).Seconds(), 0))
		}
	}
	if shadowed {
		// A copy is parked already and is the retry; its sources moved on.
		// Whoever joined the job since (register: a parked copy of this
		// batch handed back while the attempt ran, perhaps that copy
		// itself) needs a retry of its own when the attempt failed: the
		// job is parked again below, as an unshadowed one would be.
		d.mu.Lock()
		retry := !ok && len(j.waiters) > 0
		if !retry {
			// Ended under the same lock, so no one joins in between.
			if d.active[j.b.WebhookID] == j {
				delete(d.active, j.b.WebhookID)
			}
		}
		d.mu.Unlock()
		if !retry {
			switch {
			case ok:
				d.remember(j.b.WebhookID) // so this process does not send the copy
			case res.class == ResultGone:
				l.disable(ctx, ep, "gone", "endpoint answered 410 Gone")
			case failingFor >= d.cfg.DisableAfter:
				l.disable(ctx, ep, "failing", "failing without a success since "+now.Add(-failingFor).UTC().Format(time.RFC3339))
			}
			d.complete(j, nil)
			return
		}
	}
	switch {
	case ok:
		d.complete(j, nil)
	case res.class == ResultGone:
		reason := "endpoint answered 410 Gone"
		l.disable(ctx, ep, "gone", reason)
		j.b.LastStatus, j.b.LastError, j.b.Reason = res.status, res.response, reason
		d.park(j)
	case failingFor >= d.cfg.DisableAfter:
		reason := "failing without a success since " + now.Add(-failingFor).UTC().Format(time.RFC3339)
		l.disable(ctx, ep, "failing", reason)
		j.b.LastStatus, j.b.LastError, j.b.Reason = res.status, res.response, reason
		d.park(j)
	default:
		j.b.LastStatus, j.b.LastError = res.status, res.response
		j.retryAfter = res.retryAfter
		tier, due, more := d.next(j.b.Attempts, res.retryAfter)
		if !more {
			j.b.Reason = "retry schedule exhausted"
		}
		j.b.Tier, j.b.Due = tier, due
		d.park(j)
	}
}

// seed starts the failing-since clock where the delivery log says the
// endpoint's failures began, unless this process saw a success already.
func (l *lane) seed(ctx context.Context, ep *subscription.Webhook) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	since, err := l.d.cfg.Health.FailingSince(sctx, ep.AccountID, ep.ID)
	if err != nil {
		l.d.log.Warn("webhook endpoint: reading its delivery history failed; its failing-since clock starts now", "endpoint", ep.ID, "err", err)
		return
	}
	if since.IsZero() {
		return
	}
	if ep.UpdatedAt.After(since) {
		since = ep.UpdatedAt // failures before the last change do not count
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastOK.IsZero() && (l.failingSince.IsZero() || since.Before(l.failingSince)) {
		l.failingSince = since
	}
}

// disable records that delivery gave up on an endpoint.
func (l *lane) disable(ctx context.Context, ep *subscription.Webhook, kind, reason string) {
	d := l.d
	now := d.now()
	l.mu.Lock()
	already := !l.disabledAt.IsZero()
	if !already {
		l.disabledAt = now
	}
	l.mu.Unlock()
	cp := *ep
	cp.DisabledAt, cp.DisabledReason = now, reason
	l.ep.Store(&cp)
	if already {
		return
	}
	d.m.disabled.WithLabelValues(kind).Inc()
	d.log.Warn("webhook endpoint disabled", "endpoint", ep.ID, "account", ep.AccountID, "url", ep.URL, "reason", reason)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.cfg.Registry.DisableEndpoint(dctx, ep.ID, now, reason); err != nil {
		d.log.Error("webhook endpoint disabled here, but recording it failed; other workers keep sending until it is", "endpoint", ep.ID, "err", err)
	}
}
