package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/suppression"
)

// SlicesConfig configures Slices.
type SlicesConfig struct {
	Conn Conn
	// Topic is the change log. Required.
	Topic string
	// Linger is how long a slice that no partition holds any more is kept
	// (and followed) before it is dropped, so that a rebalance giving the
	// partition back to this worker does not load it again; default 30s.
	Linger time.Duration
	// Logger; default: none.
	Logger *slog.Logger
	// Registerer, when set, gets the slices' metrics.
	Registerer prometheus.Registerer
}

// Slices is a worker's suppression index split like the event topic: it
// holds the slices of the change-log partitions its consumer groups hold
// (Hold), each loaded from the start of its change-log partition and
// followed while held, and drops a slice Linger after its last holder let
// go (Release). A change-log partition's slice is the lists of the
// recipients PartitionOf puts in it, so a worker holding k of n partitions
// holds about k/n of the lists.
//
// Lookups (DropReasonAt, Lookup) and Apply go to the slice of the
// recipient's partition; a recipient whose slice is not held has no lists
// here (DropReasonAt answers "", Apply is counted and ignored), so a
// caller that decides for a recipient holds its slice first
// (pipeline.SliceHolder). Safe for concurrent use.
type Slices struct {
	cfg     SlicesConfig
	n       int // partitions of the change log
	dialer  *kafka.Dialer
	ctx     context.Context // followers run until it ends
	lag     *prometheus.GaugeVec
	unheld  prometheus.Counter
	foreign prometheus.Counter
	held    prometheus.Gauge
	loadS   *prometheus.GaugeVec

	mu     sync.RWMutex
	slices map[int]*slice
	owners map[any]map[int]int64 // per owner, the partitions it holds and the offset each must reach first (-1: not asked yet)
}

// slice is the lists of one change-log partition.
type slice struct {
	p       int
	ix      *suppression.Index
	holders int
	stop    context.CancelFunc
	linger  *time.Timer
	started time.Time

	mu        sync.Mutex
	next      int64         // offset after the last message read
	end       int64         // where the partition ended when loading began (-1: not known yet)
	loaded    bool          // next reached end once
	moved     chan struct{} // closed (and replaced) when next moves or err changes
	misplaced map[string]int
	err       error
}

// OpenSlices returns Slices of the change log (waiting until its partitions
// are known, or ctx ends); the followers it starts end with ctx.
func OpenSlices(ctx context.Context, cfg SlicesConfig) (*Slices, error) {
	if cfg.Topic == "" {
		return nil, errors.New("consumer: the slices' change-log topic is required")
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	dialer, err := cfg.Conn.Dialer()
	if err != nil {
		return nil, err
	}
	parts, err := waitPartitions(ctx, dialer, cfg.Conn.Brokers, cfg.Topic, cfg.Logger)
	if err != nil {
		return nil, err
	}
	n := len(parts)
	s := &Slices{cfg: cfg, n: n, dialer: dialer, ctx: ctx, slices: map[int]*slice{}, owners: map[any]map[int]int64{},
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			// The follower's metric (FollowMetrics), for the partitions held:
			// alerts and dashboards read one series whichever index a
			// process keeps.
			Name: "bouncer_suppression_index_lag_messages",
			Help: "Changes of the suppression change log not yet applied to this process's in-memory index, per partition, as of the last one read (a worker holding slices: its held partitions only).",
		}, []string{"partition"}),
		unheld: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_suppression_slice_unheld_total",
			Help: "List changes applied for a recipient whose slice this worker does not hold (ignored: the recipient's partition owner reads them from the change log). Should stay 0: callers hold the slices of the recipients they decide for.",
		}),
		foreign: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_suppression_slice_foreign_holds_total",
			Help: "Slices a consumer partition came to hold besides its own partition's (for a batch's recipients: an event in another partition than its recipient's slice that was not re-routed). Stays 0 with re-routing and equal partition counts.",
		}),
		loadS: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_suppression_slice_load_seconds",
			Help: "How long the last load of a change-log partition's slice took (from the start of the partition to where it ended when loading began).",
		}, []string{"partition"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_suppression_slices_held",
			Help: "Change-log partitions whose slice of the suppression lists this worker holds (lingering ones included).",
		}),
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.lag, s.unheld, s.foreign, s.held, s.loadS)
	}
	return s, nil
}

// TopicPartitions is the partition count of topic (waiting until its
// partitions show, or ctx ends).
func TopicPartitions(ctx context.Context, c Conn, topic string) (int, error) {
	dialer, err := c.Dialer()
	if err != nil {
		return 0, err
	}
	parts, err := waitPartitions(ctx, dialer, c.Brokers, topic, slog.New(slog.DiscardHandler))
	return len(parts), err
}

// Partitions is the change log's partition count: the n of PartitionOf.
func (s *Slices) Partitions() int { return s.n }

// PartitionOf is the change-log partition of a recipient's slice.
func (s *Slices) PartitionOf(account, emailNorm string) int {
	return PartitionOf(account, emailNorm, s.n)
}

// Hold makes owner a holder of the slices of the change-log partitions
// parts (numbers out of range are ignored) and returns once each holds
// every change its partition held when owner first asked for it (loading
// it from the start if this worker held it not yet), or with an error when
// ctx ends first or a slice cannot be used (the change log holds changes
// in the wrong partitions: see docs/scaling.md). A slice owner already
// holds returns at once. owner is any comparable value (a consumer group's
// handler and partition).
func (s *Slices) Hold(ctx context.Context, owner any, parts []int) error {
	if s.holding(owner, parts) {
		return nil
	}
	s.mu.Lock()
	held := s.owners[owner]
	if held == nil {
		held = map[int]int64{}
		s.owners[owner] = held
	}
	var ask []int
	for _, p := range parts {
		if p < 0 || p >= s.n {
			continue
		}
		t, ok := held[p]
		if !ok {
			if o, isPart := owner.(PartitionOwner); isPart && o.OwnPartition() != p {
				s.foreign.Inc()
			}
			s.acquire(p)
			held[p], t = -1, -1
		}
		if t < 0 {
			ask = append(ask, p)
		}
	}
	s.mu.Unlock()

	// Where each newly held partition ends now: the slice must reach it.
	for _, p := range ask {
		_, end, err := partitionOffsets(ctx, s.dialer, s.cfg.Conn.Brokers, s.cfg.Topic, p)
		if err != nil {
			return fmt.Errorf("suppression change log %s/%d: end offset: %w", s.cfg.Topic, p, err)
		}
		s.mu.Lock()
		if h := s.owners[owner]; h != nil {
			if _, ok := h[p]; ok {
				h[p] = end
			}
		}
		s.mu.Unlock()
	}
	for _, p := range parts {
		if p < 0 || p >= s.n {
			continue
		}
		s.mu.RLock()
		sl, target := s.slices[p], s.owners[owner][p]
		s.mu.RUnlock()
		if sl == nil {
			return fmt.Errorf("suppression slice %d: released while held", p)
		}
		if err := sl.wait(ctx, target); err != nil {
			return fmt.Errorf("suppression slice of change-log partition %d: %w", p, err)
		}
	}
	return nil
}

// PartitionOwner is a Hold owner that is one consumer partition: a slice
// it holds other than OwnPartition's is counted as foreign
// (bouncer_suppression_slice_foreign_holds_total).
type PartitionOwner interface {
	OwnPartition() int
}

// holding reports whether owner holds parts' slices already, each read up
// to its target and usable.
func (s *Slices) holding(owner any, parts []int) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	held := s.owners[owner]
	for _, p := range parts {
		if p < 0 || p >= s.n {
			continue
		}
		sl, target := s.slices[p], held[p]
		if _, ok := held[p]; !ok || sl == nil || !sl.reached(target) {
			return false
		}
	}
	return true
}

// Release ends owner's holds; a slice no one holds is dropped after Linger.
func (s *Slices) Release(owner any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.owners[owner] {
		sl := s.slices[p]
		if sl == nil {
			continue
		}
		sl.holders--
		if sl.holders == 0 {
			sl.linger = time.AfterFunc(s.cfg.Linger, func() { s.drop(sl) })
		}
	}
	delete(s.owners, owner)
}

// acquire adds a holder to p's slice, starting it when missing; s.mu held.
func (s *Slices) acquire(p int) {
	sl := s.slices[p]
	if sl == nil {
		ctx, stop := context.WithCancel(s.ctx)
		sl = &slice{p: p, ix: suppression.New(), stop: stop, started: time.Now(), end: -1, moved: make(chan struct{}), misplaced: map[string]int{}}
		s.slices[p] = sl
		s.held.Set(float64(len(s.slices)))
		s.cfg.Logger.Info("suppression slice: loading", "partition", p)
		go s.follow(ctx, sl)
	}
	if sl.linger != nil {
		sl.linger.Stop()
		sl.linger = nil
	}
	sl.holders++
}

// drop forgets sl unless it was held again meanwhile.
func (s *Slices) drop(sl *slice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl.holders > 0 || s.slices[sl.p] != sl {
		return
	}
	sl.stop()
	delete(s.slices, sl.p)
	s.held.Set(float64(len(s.slices)))
	s.lag.DeleteLabelValues(strconv.Itoa(sl.p))
	s.loadS.DeleteLabelValues(strconv.Itoa(sl.p))
	s.cfg.Logger.Info("suppression slice: dropped", "partition", sl.p, "entries", sl.ix.Len())
}

// reached reports whether the slice read up to target (>= 0) and is usable.
func (sl *slice) reached(target int64) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return target >= 0 && sl.next >= target && sl.err == nil
}

func (sl *slice) wait(ctx context.Context, target int64) error {
	for {
		sl.mu.Lock()
		next, err, moved := sl.next, sl.err, sl.moved
		sl.mu.Unlock()
		if next >= target {
			return err // the layout as of the target
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("loading: %d of %d offsets read: %w", next, target, ctx.Err())
		}
	}
}

func (sl *slice) advance(next int64, err error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.next = max(sl.next, next)
	sl.err = err
	close(sl.moved)
	sl.moved = make(chan struct{})
}

// follow reads sl's change-log partition from its start until ctx ends.
func (s *Slices) follow(ctx context.Context, sl *slice) {
	log := s.cfg.Logger.With("topic", s.cfg.Topic, "partition", sl.p)
	lag := s.lag.WithLabelValues(strconv.Itoa(sl.p))
	var first, end int64
	wait := startupPolicy(func(err error) { log.Warn("suppression slice: reading partition offsets failed; retrying", "err", err) })
	if retry.Do(ctx, wait, func() (err error) {
		first, end, err = partitionOffsets(ctx, s.dialer, s.cfg.Conn.Brokers, s.cfg.Topic, sl.p)
		return err
	}) != nil {
		return // ctx ended
	}
	sl.mu.Lock()
	sl.end = end
	sl.mu.Unlock()
	lag.Set(float64(max(end-first, 0)))
	sl.advance(first, nil)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.cfg.Conn.Brokers, Topic: s.cfg.Topic, Partition: sl.p, Dialer: s.dialer,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: FetchWait})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		sl.advance(first, err)
		return
	}
	loaded := first >= end
	if loaded {
		s.loaded(sl, log)
	}
	for ctx.Err() == nil {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("suppression slice: read failed; retrying", "err", err)
				Sleep(ctx, time.Second)
			}
			continue
		}
		s.apply(sl, m, log)
		lag.Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
		sl.advance(m.Offset+1, sl.layoutErr(s))
		if !loaded && m.Offset+1 >= end {
			loaded = true
			s.loaded(sl, log)
		}
	}
}

func (s *Slices) loaded(sl *slice, log *slog.Logger) {
	sl.mu.Lock()
	sl.loaded = true
	bad := len(sl.misplaced)
	sl.mu.Unlock()
	took := time.Since(sl.started)
	s.loadS.WithLabelValues(strconv.Itoa(sl.p)).Set(took.Seconds())
	log.Info("suppression slice: loaded", "entries", sl.ix.Len(), "took", took.Round(time.Millisecond))
	if bad > 0 {
		log.Error("suppression slice: the change log holds changes in the wrong partitions; run bouncer changelog repartition (docs/scaling.md) or the workers with --suppression-index=full", "misplaced", bad)
	}
}

// apply applies one change-log message to sl: a change of one of its
// recipients goes into the index; a change of another partition's
// recipient (a log written before PartitionOf, by kafka.Hash of the key)
// is remembered until a tombstone of its key in this partition clears it
// (bouncer changelog repartition writes them).
func (s *Slices) apply(sl *slice, m kafka.Message, log *slog.Logger) {
	if len(m.Value) == 0 {
		sl.mu.Lock()
		delete(sl.misplaced, string(m.Key))
		sl.mu.Unlock()
		return
	}
	var cm ChangeMessage
	if err := json.Unmarshal(m.Value, &cm); err != nil || cm.AccountID == "" || cm.EmailNorm == "" {
		log.Warn("suppression slice: skipping a malformed message", "offset", m.Offset)
		return
	}
	if PartitionOf(cm.AccountID, cm.EmailNorm, s.n) != sl.p {
		sl.mu.Lock()
		sl.misplaced[string(m.Key)]++
		sl.mu.Unlock()
		return
	}
	sl.ix.Apply(fromMessage(cm))
}

// layoutErr is the error of a slice whose partition holds other
// partitions' changes: its own recipients' changes may sit elsewhere.
func (sl *slice) layoutErr(s *Slices) error {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if len(sl.misplaced) == 0 {
		return nil
	}
	return fmt.Errorf("change log %s partition %d holds %d changes of recipients of other partitions (written before bouncer partitioned it by recipient): its own recipients' changes may be in other partitions too; run `bouncer changelog repartition` (docs/scaling.md) or the workers with --suppression-index=full",
		s.cfg.Topic, sl.p, len(sl.misplaced))
}

// Loading reports the held slices not loaded yet or unusable (nil: none),
// for the worker's readiness.
func (s *Slices) Loading(context.Context) error {
	s.mu.RLock()
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(s.slices)) {
		sl := s.slices[p]
		if sl.holders == 0 {
			continue
		}
		sl.mu.Lock()
		switch {
		case sl.err != nil:
			errs = append(errs, sl.err)
		case !sl.loaded:
			errs = append(errs, fmt.Errorf("suppression slice of partition %d loading for %s: offset %d of %d", p, time.Since(sl.started).Round(time.Second), sl.next, sl.end))
		}
		sl.mu.Unlock()
	}
	s.mu.RUnlock()
	return errors.Join(errs...)
}

// Held is the change-log partitions whose slices are held (lingering ones
// included), in order.
func (s *Slices) Held() []int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.slices))
}

func (s *Slices) index(account, emailNorm string) *suppression.Index {
	p := PartitionOf(account, emailNorm, s.n)
	s.mu.RLock()
	sl := s.slices[p]
	s.mu.RUnlock()
	if sl == nil {
		return nil
	}
	return sl.ix
}

// Apply learns one change in the slice of its recipient, if held.
func (s *Slices) Apply(c suppression.Change) {
	if ix := s.index(c.AccountID, c.EmailNorm); ix != nil {
		ix.Apply(c)
		return
	}
	s.unheld.Inc()
}

// DropReasonAt is suppression.Index.DropReasonAt on the recipient's slice
// ("" when it is not held).
func (s *Slices) DropReasonAt(account, emailNorm string, group int64, at int64, asOf suppression.Position) string {
	if ix := s.index(account, emailNorm); ix != nil {
		return ix.DropReasonAt(account, emailNorm, group, at, asOf)
	}
	return ""
}

// Lookup is suppression.Index.Lookup on the recipient's slice (nil when it
// is not held).
func (s *Slices) Lookup(account, emailNorm string) []suppression.Membership {
	if ix := s.index(account, emailNorm); ix != nil {
		return ix.Lookup(account, emailNorm)
	}
	return nil
}

// Len is the active memberships of the held slices.
func (s *Slices) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, sl := range s.slices {
		n += sl.ix.Len()
	}
	return n
}
