package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/subscription"
)

// Parker keeps batches that are not delivered now. Both methods return
// only when the batches are durable (in Kafka), so the caller may commit
// the offsets of the events they carry.
type Parker interface {
	// Retry parks batches in their retry tier (Batch.Tier) until Batch.Due.
	Retry(ctx context.Context, batches []*Batch) error
	// GiveUp keeps batches that will not be retried (Batch.Reason says
	// why) where operators list and replay them.
	GiveUp(ctx context.Context, batches []*Batch) error
}

// Health reads what the delivery log knows of an endpoint, so the "failing
// without a success for DisableAfter" clock survives worker restarts.
type Health interface {
	// FailingSince is the first failed attempt after the endpoint's last
	// success (zero: none, or no failure since).
	FailingSince(ctx context.Context, account, endpoint string) (time.Time, error)
}

// Config of a Dispatcher. Zero values take the stated defaults.
type Config struct {
	// Registry lists the subscriptions; polled every RefreshEvery. Required.
	Registry Registry
	// Client sends requests; give it the SSRF guard's dialer. Required.
	Client *http.Client
	// Parker holds failed batches (retry tiers, dead letters). Required.
	Parker Parker
	// Log receives delivery log rows; nil: none.
	Log interface{ Record(subscription.Delivery) }
	// Health, when set, seeds each endpoint's failing-since clock from the
	// delivery log when this process first sees the endpoint.
	Health Health
	// Drops, when set, gives processed events to suppressed recipients a
	// derived dropped event, as the sink group does; it learns the list
	// changes of the events consumed (pipeline.ListChanges, with
	// Classifier).
	Drops pipeline.Suppressions
	// CatchUp, when set, is called when a partition of the event topic is
	// assigned (as pipeline.Config.CatchUp): the drops of its next events
	// count the list changes announced until then.
	CatchUp func(context.Context) error
	// Route, when set, is the sink group's re-routing (pipeline.Router):
	// an event it copies to the routed topic is still delivered where the
	// producer put it (delivery does not wait for the sink group, nor so
	// for ClickHouse), and its list changes and derived drop come from
	// its copy (the group consumes the routed topic too).
	Route *pipeline.Router
	// Classifier, when set, fills in SendGrid's fields of bounce and
	// blocked events the producer left out (payload.go); nil: bounces are
	// sent as produced.
	Classifier *enrich.Classifier

	Schedule Schedule
	// MaxBatchEvents bounds the events of one request; default 100.
	MaxBatchEvents int
	// MaxBatchBytes bounds a request body; default 256 KiB.
	MaxBatchBytes int
	// MaxBatchWait is how long a batch waits to fill; default 200ms.
	MaxBatchWait time.Duration
	// AttemptTimeout bounds one POST; default 10s.
	AttemptTimeout time.Duration
	// QueueTimeout is how long a formed batch may wait for a send slot
	// before it is parked in the first retry tier; default 2s.
	QueueTimeout time.Duration
	// QueueEvents bounds each endpoint's queue (events waiting to be sent).
	// While the queue is full and its endpoint sending normally (circuit
	// closed, no attempt past SlowAfter), the handler waits for room, up
	// to QueueTimeout; events it cannot queue are parked in the first
	// retry tier. Default 10000.
	QueueEvents int
	// GlobalEvents bounds the events queued for all endpoints of the node;
	// default 200000.
	GlobalEvents int
	// MaxInFlight is the most concurrent requests to one endpoint; the
	// limit starts at 2, grows by one per round of successes and halves on
	// 429, 5xx and timeouts. Default 16.
	MaxInFlight int
	// BreakerFailures consecutive failures open an endpoint's circuit
	// (default 5); it stays open BreakerOpen (default 30s), then lets one
	// trial through. While it is not closed, new batches are parked in the
	// first retry tier instead of sent.
	BreakerFailures int
	BreakerOpen     time.Duration
	// RefreshEvery is how often the Registry is read; default 2s.
	RefreshEvery time.Duration
	// DisableAfter disables an endpoint that failed this long without a
	// single success; default 72h.
	DisableAfter time.Duration
	// TokenEarly is how long before its expiry an OAuth access token is
	// replaced (see tokens); default 30s.
	TokenEarly time.Duration
	// SlowAfter: when an attempt runs longer, a copy of its batch is
	// parked (due after the attempt's deadline), so the consumed batches
	// waiting for it can be committed, and the endpoint's new batches are
	// parked until it succeeds again; default 1s. See Dispatcher.shadow.
	SlowAfter time.Duration

	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Rand jitters the schedule; default a random source.
	Rand *rand.Rand
}

// Validate fills defaults and reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Registry == nil:
		return errors.New("webhook: Config.Registry is required")
	case c.Client == nil:
		return errors.New("webhook: Config.Client is required")
	case c.Parker == nil:
		return errors.New("webhook: Config.Parker is required")
	}
	if err := c.Schedule.validate(); err != nil {
		return err
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxBatchEvents, 100)
	def(&c.MaxBatchBytes, 256<<10)
	def(&c.QueueEvents, 10000)
	def(&c.GlobalEvents, 200000)
	def(&c.MaxInFlight, 16)
	def(&c.BreakerFailures, 5)
	defd(&c.MaxBatchWait, 200*time.Millisecond)
	defd(&c.AttemptTimeout, 10*time.Second)
	defd(&c.QueueTimeout, 2*time.Second)
	defd(&c.BreakerOpen, 30*time.Second)
	defd(&c.RefreshEvery, 2*time.Second)
	defd(&c.DisableAfter, 72*time.Hour)
	defd(&c.SlowAfter, time.Second)
	defd(&c.TokenEarly, 30*time.Second)
	if c.QueueEvents < c.MaxBatchEvents {
		return fmt.Errorf("webhook: QueueEvents %d must hold at least one batch (%d)", c.QueueEvents, c.MaxBatchEvents)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return nil
}

// Dispatcher delivers events to endpoints: one lane per endpoint, each
// with its bounded queue, in-flight limit and circuit breaker.
type Dispatcher struct {
	cfg  Config
	m    *Metrics
	log  *slog.Logger
	snap atomic.Pointer[snapshot]

	// mu guards lanes and active; a lane's own mu is taken after it,
	// never before.
	mu     sync.Mutex
	lanes  map[string]*lane
	active map[string]*job // retried batches queued or sending, by webhook-id
	rndMu  sync.Mutex

	queued atomic.Int64
	parkCh chan *job
	// room is closed (and cleared) when a lane's queue shrinks; handlers
	// waiting for room in a full lane wait on it (roomSignal).
	roomMu sync.Mutex
	room   chan struct{}

	recentMu    sync.Mutex
	recent      map[string]bool
	recentOrder []string
	ctx         context.Context

	// tokens are the OAuth access tokens of endpoints that use OAuth.
	tokens *tokens
}

type snapshot struct {
	byAccount map[string][]*subscription.Webhook // active endpoints
	byID      map[string]*subscription.Webhook
}

// New checks cfg and returns a Dispatcher; call Run.
func New(cfg Config) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Dispatcher{cfg: cfg, m: cfg.Metrics, log: cfg.Logger, lanes: map[string]*lane{},
		active: map[string]*job{}, parkCh: make(chan *job, 4096), ctx: context.Background(), tokens: newTokens(cfg.Client, cfg.TokenEarly)}, nil
}

// Run reads the registry and keeps the lanes running until ctx ends. It
// returns after the first registry read failed only if ctx ended.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	d.mu.Unlock()
	go d.parkLoop(ctx)
	t := time.NewTicker(d.cfg.RefreshEvery)
	defer t.Stop()
	for {
		if err := d.Refresh(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook subscriptions: read failed; keeping the last ones", "err", err)
		}
		d.gauges()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Ready reports whether the subscriptions have been read once.
func (d *Dispatcher) Ready() bool { return d.snap.Load() != nil }

// Refresh reads the registry now.
func (d *Dispatcher) Refresh(ctx context.Context) error {
	eps, err := d.cfg.Registry.Endpoints(ctx)
	if err != nil {
		return err
	}
	d.m.countEndpoints(eps)
	s := &snapshot{byAccount: map[string][]*subscription.Webhook{}, byID: make(map[string]*subscription.Webhook, len(eps))}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range eps {
		ep := &eps[i]
		if l := d.lanes[ep.ID]; l != nil {
			ep = l.update(ep)
		}
		s.byID[ep.ID] = ep
		if ep.Active() {
			s.byAccount[ep.AccountID] = append(s.byAccount[ep.AccountID], ep)
		}
	}
	for id, l := range d.lanes {
		if s.byID[id] == nil {
			l.ep.Store(nil) // deleted: what is queued is given up, then the lane stops
			l.wake()
		}
	}
	d.tokens.keep(s.byID)
	d.snap.Store(s)
	return nil
}

// lane returns the endpoint's lane, starting it on first use.
func (d *Dispatcher) lane(ep *subscription.Webhook) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lanes[ep.ID]
	if l == nil {
		l = newLane(d, ep)
		if s := d.snap.Load(); s != nil && s.byID[ep.ID] == nil {
			// Deleted since the caller's snapshot: the lane gives up
			// what it gets, then stops.
			l.ep.Store(nil)
		}
		d.lanes[ep.ID] = l
		go l.run(d.ctx)
		if d.cfg.Health != nil {
			go l.seed(d.ctx, ep)
		}
	}
	return l
}

func (d *Dispatcher) gauges() {
	d.mu.Lock()
	defer d.mu.Unlock()
	states := map[string]float64{"closed": 0, "half-open": 0, "open": 0}
	largest := 0
	for _, l := range d.lanes {
		states[l.br.State().String()]++
		l.mu.Lock()
		largest = max(largest, l.queued)
		l.mu.Unlock()
	}
	for s, n := range states {
		d.m.circuits.WithLabelValues(s).Set(n)
	}
	d.m.largestQueue.Set(float64(largest))
	d.m.queued.Set(float64(d.queued.Load()))
}

func (d *Dispatcher) now() time.Time { return d.cfg.Now() }

// reserve takes room for up to n events in the node's bound
// (GlobalEvents) and returns how many it took.
func (d *Dispatcher) reserve(n int) int {
	for n > 0 {
		cur := d.queued.Load()
		k := min(int64(n), int64(d.cfg.GlobalEvents)-cur)
		if k <= 0 {
			return 0
		}
		if d.queued.CompareAndSwap(cur, cur+k) {
			return int(k)
		}
	}
	return 0
}

// roomSignal returns a channel closed the next time a lane's queue
// shrinks.
func (d *Dispatcher) roomSignal() <-chan struct{} {
	d.roomMu.Lock()
	defer d.roomMu.Unlock()
	if d.room == nil {
		d.room = make(chan struct{})
	}
	return d.room
}

// roomFreed wakes those waiting for room.
func (d *Dispatcher) roomFreed() {
	d.roomMu.Lock()
	if d.room != nil {
		close(d.room)
		d.room = nil
	}
	d.roomMu.Unlock()
}

func (d *Dispatcher) next(attempts int, retryAfter time.Duration) (int, time.Time, bool) {
	d.rndMu.Lock()
	defer d.rndMu.Unlock()
	return d.cfg.Schedule.next(attempts, retryAfter, d.now(), d.cfg.Rand)
}

// tracker counts the events of one consumed batch that are not yet
// delivered or parked.
type tracker struct {
	mu      sync.Mutex
	pending int
	err     error
	done    chan struct{}
}

func newTracker() *tracker { return &tracker{pending: 1, done: make(chan struct{})} }

func (t *tracker) add(n int) {
	t.mu.Lock()
	t.pending += n
	t.mu.Unlock()
}

func (t *tracker) finish(n int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil && t.err == nil {
		t.err = err
	}
	t.pending -= n
	if t.pending == 0 {
		close(t.done)
	}
}

// wait returns the outcome once every event is delivered or parked, or
// ctx's error if it ends first (a batch that is done wins over a context
// that ended meanwhile).
func (t *tracker) wait(ctx context.Context) error {
	select {
	case <-t.done:
	case <-ctx.Done():
		select {
		case <-t.done:
		default:
			return ctx.Err()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// job is a batch on its way: queued, sending or being parked.
type job struct {
	// mu guards attemptDone and shadowed, between the attempt and the
	// slow-attempt timer.
	mu          sync.Mutex
	attemptDone bool
	shadowed    bool
	slowCounted bool // counted in its lane's slow (under the lane's mu)

	b        *Batch
	waiters  []waiter
	queuedAt time.Time
	// fresh: formed from consumed events, not in Kafka yet.
	fresh bool
	// retryAfter from the last response.
	retryAfter time.Duration
}

type waiter struct {
	t *tracker
	n int
}

// shadow parks a copy of a batch whose attempt is still running after
// SlowAfter, due only after the attempt's deadline, and hands the batch's
// sources (the consumed batches waiting for it) to the copy: they can be
// committed as soon as the copy is in Kafka, so an endpoint that hangs
// holds back the group's commits for SlowAfter, not for the whole attempt
// (the group hands on later batches meanwhile). The copy is the
// retry; if the attempt succeeds after all, this process skips the copy
// (remember), another would send it once more under the same webhook-id.
func (d *Dispatcher) shadow(j *job, start time.Time) {
	tier, due, ok := d.next(j.b.Attempts, 0)
	if !ok {
		return // the last attempt: wait for it
	}
	due = later(due, start.Add(d.cfg.AttemptTimeout+time.Second))
	// Marking the job shadowed and moving its waiters to the copy is one
	// step (d.mu, then j.mu, the usual order): an attempt that ends in
	// between must not hand the waiters a success the copy has not earned.
	d.mu.Lock()
	j.mu.Lock()
	if j.attemptDone || j.shadowed {
		j.mu.Unlock()
		d.mu.Unlock()
		return
	}
	j.shadowed = true
	ws := j.waiters
	j.waiters = nil
	j.mu.Unlock()
	d.mu.Unlock()
	cp := *j.b
	cp.Tier, cp.Due = tier, due
	cp.LastError = "attempt still running after " + d.cfg.SlowAfter.String()
	d.park(&job{b: &cp, waiters: ws})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// remember notes a webhook-id delivered while its copy was parked, so
// Redeliver skips the copy.
func (d *Dispatcher) remember(id string) {
	d.recentMu.Lock()
	defer d.recentMu.Unlock()
	if d.recent == nil {
		d.recent = map[string]bool{}
	}
	if len(d.recentOrder) >= maxRecent {
		delete(d.recent, d.recentOrder[0])
		d.recentOrder = d.recentOrder[1:]
	}
	d.recent[id] = true
	d.recentOrder = append(d.recentOrder, id)
}

func (d *Dispatcher) delivered(id string) bool {
	d.recentMu.Lock()
	defer d.recentMu.Unlock()
	return d.recent[id]
}

// maxRecent bounds the remembered webhook-ids.
const maxRecent = 100_000

// register makes j the active job of its webhook-id; when one is already
// queued or sending, the caller's tracker waits for that one instead and
// register returns false: one webhook-id is never sent twice at once.
func (d *Dispatcher) register(j *job, t *tracker) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.active[j.b.WebhookID]; cur != nil {
		cur.waiters = append(cur.waiters, waiter{t, 1})
		return false
	}
	d.active[j.b.WebhookID] = j
	return true
}

// complete ends a job: its waiters learn the outcome.
func (d *Dispatcher) complete(j *job, err error) {
	d.mu.Lock()
	if d.active[j.b.WebhookID] == j {
		delete(d.active, j.b.WebhookID)
	}
	ws := j.waiters
	j.waiters = nil
	d.mu.Unlock()
	for _, w := range ws {
		w.t.finish(w.n, err)
	}
}

// park hands a job to the parking loop: to its retry tier, or given up
// when b.Reason is set.
func (d *Dispatcher) park(j *job) {
	select {
	case d.parkCh <- j:
	case <-d.ctx.Done():
		d.complete(j, fmt.Errorf("webhook: shutting down before batch %s was parked", j.b.WebhookID))
	}
}

// parkLoop writes parked jobs to Kafka in batches.
func (d *Dispatcher) parkLoop(ctx context.Context) {
	var jobs []*job
	for {
		select {
		case j := <-d.parkCh:
			jobs = append(jobs[:0], j)
		case <-ctx.Done():
			return
		}
		// Gather what else is waiting, without delaying the first.
	more:
		for len(jobs) < 1000 {
			select {
			case j := <-d.parkCh:
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		var retry, giveUp []*Batch
		for _, j := range jobs {
			if j.b.Reason != "" {
				giveUp = append(giveUp, j.b)
			} else {
				retry = append(retry, j.b)
			}
		}
		err := d.write(ctx, retry, giveUp)
		now := d.now()
		for _, j := range jobs {
			if err != nil {
				d.complete(j, err)
				continue
			}
			result := ResultParked
			if j.b.Reason != "" {
				result = ResultExhausted
			}
			d.m.deliveries.WithLabelValues(result).Inc()
			d.record(subscription.Delivery{EndpointID: j.b.EndpointID, AccountID: j.b.AccountID, WebhookID: j.b.WebhookID,
				Attempt: j.b.Attempts, Result: result, Status: j.b.LastStatus, Events: len(j.b.Events),
				Response: truncate(cmp.Or(j.b.Reason, j.b.LastError)), At: now, Circuit: d.circuit(j.b.EndpointID)})
			d.complete(j, nil)
		}
		clear(jobs)
	}
}

// write stores parked batches, retrying briefly (Kafka elections, a
// broker restart) before reporting failure to the batches' sources.
func (d *Dispatcher) write(ctx context.Context, park, giveUp []*Batch) error {
	return retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second, GiveUpAfter: 15 * time.Second}, func() error {
		if len(park) > 0 {
			if err := d.cfg.Parker.Retry(ctx, park); err != nil {
				d.m.parkErrors.Inc()
				d.log.Warn("webhook: parking batches in the retry tiers failed", "batches", len(park), "err", err)
				return err
			}
			park = nil
		}
		if len(giveUp) > 0 {
			if err := d.cfg.Parker.GiveUp(ctx, giveUp); err != nil {
				d.m.parkErrors.Inc()
				d.log.Warn("webhook: writing failed batches failed", "batches", len(giveUp), "err", err)
				return err
			}
		}
		return nil
	})
}

func (d *Dispatcher) record(r subscription.Delivery) {
	if d.cfg.Log != nil {
		d.cfg.Log.Record(r)
	}
}

func (d *Dispatcher) circuit(endpoint string) string {
	d.mu.Lock()
	l := d.lanes[endpoint]
	d.mu.Unlock()
	if l == nil {
		return ""
	}
	return l.br.State().String()
}

func truncate(s string) string {
	if len(s) > subscription.MaxResponseLog {
		return s[:subscription.MaxResponseLog]
	}
	return s
}
