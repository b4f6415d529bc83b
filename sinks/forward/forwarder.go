package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/schemas"
)

// Forwarder is the forwarding group's consumer.BatchHandler. Handle may be
// called for several partitions at once; Run sends the digests and
// refreshes the settings.
type Forwarder struct {
	cfg Config
	log *slog.Logger
	m   *Metrics

	mu       sync.Mutex
	loaded   bool
	settings map[string]string // account: forwarding address as set
	parts    map[partKey]*partState
	windows  map[string]*window    // account: its current rate window
	digests  map[digestKey]*digest // pending digests
	pending  int                   // bounces listed in pending digests
	sending  map[digestKey]bool    // digests being sent by Run
	refresh  sync.Mutex            // one settings read at a time
	stopping context.Context       // ended by StopRetrying
	stop     context.CancelFunc
}

var _ consumer.BatchHandler = (*Forwarder)(nil)

type partKey struct {
	topic     string
	partition int
}

// partState is one partition's progress; only its goroutine touches it.
type partState struct {
	// next is the first (offset, index) not yet handled; offset -1: unknown
	// (everything handed to Handle is new).
	next struct {
		offset int64
		index  int
	}
	// inflight is the report of the event at next when an earlier call
	// ended before the relay took it: a new call sends it again as it is
	// (same Message-ID, no second rate token). failingSince is when
	// sending it began.
	inflight     *mail.Msg
	inflightFor  string
	failingSince time.Time
	dec          schemas.Decoder
	evs          []schemas.Event
}

type window struct {
	start time.Time
	sent  int
}

type digestKey struct {
	account string
	start   time.Time
}

type digest struct {
	to   string
	list []bounce
	more int
}

// New checks cfg and returns a Forwarder.
func New(cfg Config) (*Forwarder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	stopping, stop := context.WithCancel(context.Background())
	return &Forwarder{
		cfg: cfg, log: cfg.Logger, m: cfg.Metrics,
		parts: map[partKey]*partState{}, windows: map[string]*window{},
		digests: map[digestKey]*digest{}, sending: map[digestKey]bool{},
		stopping: stopping, stop: stop,
	}, nil
}

// Assigned forgets the partition's progress: the consumer resumes from the
// committed offset.
func (f *Forwarder) Assigned(ctx context.Context, topic string, partition int) (int64, error) {
	st := f.state(topic, partition)
	st.next.offset, st.next.index = -1, 0
	st.inflight, st.failingSince = nil, time.Time{}
	return 0, nil
}

func (f *Forwarder) state(topic string, partition int) *partState {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := partKey{topic, partition}
	st := f.parts[k]
	if st == nil {
		st = &partState{}
		st.next.offset = -1
		st.dec.MaxMessageBytes = f.cfg.MaxMessageBytes
		f.parts[k] = st
	}
	return st
}

// Handle forwards the bounces of msgs (see the package doc). It returns
// nil once every report was handed to the relay, given up or folded into a
// digest. It returns an error when the settings were never read, when ctx
// ended first, or after StopRetrying; a new call with the same messages
// then resumes where this one stopped.
func (f *Forwarder) Handle(ctx context.Context, topic string, partition int, msgs []consumer.Message) error {
	if err := f.ensureSettings(ctx); err != nil {
		return err
	}
	st := f.state(topic, partition)
	f.mu.Lock()
	anyone := len(f.settings) > 0
	f.mu.Unlock()
	for i := range msgs {
		msg := &msgs[i]
		if msg.Offset < st.next.offset {
			continue
		}
		if msg.Offset > st.next.offset {
			st.next.offset, st.next.index = msg.Offset, 0
		}
		if st.inflight == nil && (!anyone || !mayHoldBounce(msg.Value)) {
			st.next.offset, st.next.index = msg.Offset+1, 0
			continue
		}
		at := schemas.Coordinates{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}
		st.evs, _ = st.dec.Decode(msg.Value, at, st.evs[:0]) // rejections are the sink's to dead-letter
		for j := st.next.index; j < len(st.evs); j++ {
			if err := f.event(ctx, st, &st.evs[j]); err != nil {
				return err
			}
			st.next.index = j + 1
			st.inflight, st.failingSince = nil, time.Time{}
		}
		st.next.offset, st.next.index = msg.Offset+1, 0
	}
	clear(st.evs) // let the message bytes go
	return nil
}

// mayHoldBounce is a cheap filter before decoding: a message with a bounce
// event holds the bytes "bounce", or an escape that could spell them.
func mayHoldBounce(v []byte) bool {
	return bytes.Contains(v, []byte("bounce")) || bytes.Contains(v, []byte(`\u`))
}

// event forwards one event if it should be: sent now, or folded into the
// window's digest.
func (f *Forwarder) event(ctx context.Context, st *partState, ev *schemas.Event) error {
	if st.inflight != nil {
		return f.report(ctx, st, st.inflight, st.inflightFor, ev.AccountID)
	}
	if ev.Event != schemas.EventBounce {
		return nil
	}
	f.mu.Lock()
	to := f.settings[ev.AccountID]
	f.mu.Unlock()
	if to == "" {
		return nil
	}
	switch {
	case ev.Type == schemas.TypeBlocked && !f.cfg.ForwardBlocks:
		f.m.bounces.WithLabelValues(OutcomeBlock).Inc()
		return nil
	case strings.EqualFold(strings.TrimSpace(to), ev.EmailNorm) || forwardedMark(ev):
		f.m.bounces.WithLabelValues(OutcomeLoop).Inc()
		return nil
	}
	res, err := f.cfg.Classifier.Classify(enrich.Input{
		Event: string(ev.Event), Type: ev.Type, Reason: ev.Reason,
		Response: ev.Response, Status: ev.Status, Email: ev.Email,
	})
	if err != nil {
		return nil // not a bounce the classifier knows: nothing to report
	}
	if res.BounceType != enrich.Hard && ev.Type != schemas.TypeBlocked {
		f.m.bounces.WithLabelValues(OutcomeSoft).Inc()
		return nil
	}
	now := f.cfg.Clock.Now()
	if now.Sub(time.Unix(ev.Timestamp, 0)) > f.cfg.MaxAge {
		f.m.bounces.WithLabelValues(OutcomeStale).Inc()
		return nil
	}
	b := newBounce(ev, &res)
	if !f.takeToken(ev.AccountID, to, b, now) {
		return nil // folded into the digest
	}
	m, err := f.reportMsg(to, b, now)
	if err != nil {
		f.log.Warn("forward: cannot build report", "account", b.Account, "err", err)
		f.m.bounces.WithLabelValues(OutcomeFailed).Inc()
		return nil
	}
	st.inflight, st.inflightFor, st.failingSince = m, to, now
	return f.report(ctx, st, m, to, b.Account)
}

// report delivers the report of the event at the partition's position.
func (f *Forwarder) report(ctx context.Context, st *partState, m *mail.Msg, to, account string) error {
	result, err := f.deliver(ctx, m, st.failingSince)
	if err != nil {
		return err // ctx ended: the batch is resumed or redelivered
	}
	f.m.emails.WithLabelValues("report", result).Inc()
	if result == "sent" {
		f.m.bounces.WithLabelValues(OutcomeForwarded).Inc()
	} else {
		f.m.bounces.WithLabelValues(OutcomeFailed).Inc()
		f.log.Error("forward: bounce report not delivered", "account", account, "to", to, "result", result)
	}
	return nil
}

// takeToken counts a report against the account's window and reports
// whether it may be sent now; if not, the bounce joins the window's digest.
func (f *Forwarder) takeToken(account, to string, b bounce, now time.Time) bool {
	start := now.Truncate(f.cfg.RateWindow)
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.windows[account]
	if w == nil || !w.start.Equal(start) {
		w = &window{start: start}
		f.windows[account] = w
	}
	if w.sent < f.cfg.RateLimit {
		w.sent++
		return true
	}
	k := digestKey{account, start}
	d := f.digests[k]
	if d == nil {
		d = &digest{to: to}
		f.digests[k] = d
	}
	d.to = to // the newest address wins
	if len(d.list) < f.cfg.DigestMax && f.pending < f.cfg.MaxPendingBounces {
		d.list = append(d.list, b)
		f.pending++
		f.m.pendingDigests.Set(float64(f.pending))
		f.m.bounces.WithLabelValues(OutcomeDigested).Inc()
	} else {
		d.more++
		f.m.bounces.WithLabelValues(OutcomeCounted).Inc()
	}
	return false
}

// deliver sends m, retrying transient failures until giveUpAt passes
// (counted from since). It returns "sent", "rejected" (a permanent
// failure) or "gave_up", or ctx's error when ctx ended first.
func (f *Forwarder) deliver(ctx context.Context, m *mail.Msg, since time.Time) (string, error) {
	giveUp := since.Add(f.cfg.GiveUpAfter) // spans Handle calls: since is when sending m began
	// The pauses end with ctx or StopRetrying; a send under way does not.
	pauses, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(f.stopping, cancel)()
	var result string
	var gaveUp bool
	err := retry.Do(pauses, retry.Policy{
		Initial: f.cfg.RetryInitial, Max: f.cfg.RetryMax, Clock: f.cfg.Clock,
		GiveUpIf: func(pause time.Duration) bool {
			gaveUp = f.cfg.Clock.Now().Add(pause).After(giveUp)
			return gaveUp
		},
		Notify: func(err error, pause time.Duration) {
			f.m.retries.Inc()
			f.log.Warn("forward: send failed; retrying", "message_id", m.GetMessageID(), "in", pause.Round(time.Millisecond), "err", err)
		},
	}, func() error {
		err := f.send(ctx, m)
		switch {
		case err == nil:
			result = "sent"
		case ctx.Err() != nil:
			return retry.Permanent(err)
		case isPermanent(err):
			f.log.Error("forward: relay refused the message for good", "message_id", m.GetMessageID(), "err", err)
			result = "rejected"
			return nil
		}
		return err
	})
	switch {
	case err == nil:
		return result, nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case !gaveUp:
		return "", errStopping
	}
	f.log.Error("forward: giving up after transient failures", "message_id", m.GetMessageID(), "since", since, "err", err)
	return "gave_up", nil
}

// errStopping ends a retry loop once StopRetrying was called.
var errStopping = errors.New("forwarder is stopping")

// StopRetrying makes sends that are waiting to retry give up at once with
// an error (their batch is not committed and will be redelivered), so a
// shutdown does not wait for a dead relay. Call it when shutdown begins.
func (f *Forwarder) StopRetrying() { f.stop() }

// serve runs the forwarder for as long as feed (its consumer group, run on
// ctx) runs, and returns their joined errors. The forwarder outlives the
// feed by its final flush: the digests of the last batches are sent after
// the group stopped handing it any. When ctx ends, failed sends stop being
// retried (StopRetrying), so a dead relay cannot hold a shutdown.
func (f *Forwarder) serve(ctx context.Context, feed func(context.Context) error) error {
	fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- f.Run(fctx) }()
	go func() {
		select {
		case <-ctx.Done():
			f.StopRetrying()
		case <-fctx.Done():
		}
	}()
	err := feed(ctx)
	stop()
	return errors.Join(err, <-done)
}

// ensureSettings loads the settings once if Run has not yet.
func (f *Forwarder) ensureSettings(ctx context.Context) error {
	f.mu.Lock()
	loaded := f.loaded
	f.mu.Unlock()
	if loaded {
		return nil
	}
	return f.loadSettings(ctx)
}

func (f *Forwarder) loadSettings(ctx context.Context) error {
	f.refresh.Lock()
	defer f.refresh.Unlock()
	list, err := f.cfg.Settings.EnabledForwardBounces(ctx)
	if err != nil {
		f.m.refreshErrors.Inc()
		return fmt.Errorf("read forwarding settings: %w", err)
	}
	next := make(map[string]string, len(list))
	for _, s := range list {
		if s.Enabled && s.AccountID != "" && s.Email != "" {
			next[s.AccountID] = s.Email
		}
	}
	f.mu.Lock()
	f.settings, f.loaded = next, true
	f.mu.Unlock()
	f.m.accounts.Set(float64(len(next)))
	return nil
}

// Run refreshes the settings every RefreshEvery and sends each digest when
// its window ends, until ctx ends; then it sends the pending digests
// (bounded by FlushTimeout) and returns. Call it once, beside the group.
func (f *Forwarder) Run(ctx context.Context) error {
	if err := f.loadSettings(ctx); err != nil && ctx.Err() == nil {
		f.log.Warn("forward: settings not loaded; retrying", "in", f.cfg.RefreshEvery, "err", err)
	}
	tick := min(max(f.cfg.RateWindow/10, 50*time.Millisecond), time.Second)
	flush := f.cfg.Clock.NewTicker(tick)
	defer flush.Stop()
	refresh := f.cfg.Clock.NewTicker(f.cfg.RefreshEvery)
	defer refresh.Stop()
	var wg sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			fctx, cancel := context.WithTimeout(context.Background(), f.cfg.FlushTimeout)
			defer cancel()
			f.flush(fctx, nil, time.Time{})
			f.mu.Lock()
			lost := 0
			for _, d := range f.digests {
				lost += len(d.list) + d.more
			}
			f.mu.Unlock()
			if lost > 0 {
				f.log.Error("forward: pending digests not sent before shutdown; their bounces are not forwarded", "bounces", lost)
			}
			return nil
		case <-refresh.Chan():
			if err := f.loadSettings(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("forward: settings refresh failed; keeping the previous ones", "err", err)
			}
		case <-flush.Chan():
			f.flush(ctx, &wg, f.cfg.Clock.Now())
		}
	}
}

// flush sends the digests whose window ended by now (all of them when now
// is zero), each in its own goroutine when wg is set, else one by one.
func (f *Forwarder) flush(ctx context.Context, wg *sync.WaitGroup, now time.Time) {
	f.mu.Lock()
	var due []digestKey
	for k := range f.digests {
		if !f.sending[k] && (now.IsZero() || !now.Before(k.start.Add(f.cfg.RateWindow))) {
			due = append(due, k)
			f.sending[k] = true
		}
	}
	// Windows that ended hold nothing worth keeping.
	for a, w := range f.windows {
		if !now.IsZero() && !now.Before(w.start.Add(f.cfg.RateWindow)) {
			delete(f.windows, a)
		}
	}
	f.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].start.Before(due[j].start) })
	for _, k := range due {
		if wg == nil {
			f.sendDigest(ctx, k)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.sendDigest(ctx, k)
		}()
	}
}

func (f *Forwarder) sendDigest(ctx context.Context, k digestKey) {
	// Take the digest out of the map: a bounce that arrives while it is
	// being sent starts a new one, sent at the next tick.
	f.mu.Lock()
	d := f.digests[k]
	delete(f.digests, k)
	f.mu.Unlock()
	finish := func() {
		f.mu.Lock()
		delete(f.sending, k)
		if d != nil {
			f.pending -= len(d.list)
		}
		f.m.pendingDigests.Set(float64(f.pending))
		f.mu.Unlock()
	}
	if d == nil {
		finish()
		return
	}
	// The newest setting decides: turned off meanwhile, the digest is
	// dropped; a new address gets it.
	f.mu.Lock()
	to := f.settings[k.account]
	f.mu.Unlock()
	if to == "" {
		f.log.Info("forward: forwarding was turned off; digest dropped", "account", k.account, "bounces", len(d.list)+d.more)
		finish()
		return
	}
	d.to = to
	now := f.cfg.Clock.Now()
	m, err := f.digestMsg(d.to, k.account, k.start, k.start.Add(f.cfg.RateWindow), d.list, d.more, now)
	if err != nil {
		f.log.Warn("forward: cannot build digest", "account", k.account, "err", err)
		finish()
		return
	}
	result, err := f.deliver(ctx, m, now)
	if err != nil {
		// Stopping: put the digest back for Run's final flush.
		f.mu.Lock()
		if cur := f.digests[k]; cur != nil {
			cur.list = append(d.list, cur.list...)
			cur.more += d.more
		} else {
			f.digests[k] = d
		}
		delete(f.sending, k)
		f.mu.Unlock()
		return
	}
	finish()
	f.m.emails.WithLabelValues("digest", result).Inc()
	if result != "sent" {
		f.log.Error("forward: digest not delivered", "account", k.account, "to", d.to, "bounces", len(d.list)+d.more, "result", result)
		return
	}
	f.log.Info("forward: digest sent", "account", k.account, "bounces", len(d.list)+d.more)
}
