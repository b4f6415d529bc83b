package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/retry"
)

// GroupConfig configures one consumer group member.
type GroupConfig struct {
	Conn Conn
	// Topic to consume. Required.
	Topic string
	// Topics are more topics the member consumes in the same group, each
	// partition as one of Topic's (the handler is told the topic). The
	// sink and webhook groups consume the routed copies' topic
	// (RoutedTopic) so: kafka-go's range assignor gives the same-numbered
	// partitions of topics with equal partition counts to the same member,
	// so partition p of both sits with suppression slice p.
	Topics []string
	// GroupID is the consumer group. Required.
	GroupID string
	// MaxBatchMessages bounds a batch; default 20000.
	MaxBatchMessages int
	// MaxBatchBytes bounds the message bytes of a batch; default 16 MiB.
	MaxBatchBytes int
	// MaxWait is how long a batch waits to fill after its first message;
	// default 500ms.
	MaxWait time.Duration
	// TopicsMaxWait is MaxWait for the partitions of Topics; default
	// MaxWait. The routed copies' topic gets its messages in bursts (one
	// produce request of each source partition's batch, written while the
	// source's batch is being stored): waiting longer than the bursts of
	// one round of source batches only holds the copies back, and in a
	// worker whose inserts are merged (sinks/clickhouse's group commits)
	// the source partitions wait for them.
	TopicsMaxWait time.Duration
	// QueueCapacity bounds the messages each partition's reader prefetches
	// while a batch is being handled; default 2000 (at most
	// MaxBatchMessages). The rest of the next batch is read from the
	// connection when the handler returns: a bigger queue holds more memory
	// (every message of it, per partition) without making a worker that is
	// busy decoding any faster.
	QueueCapacity int
	// SessionTimeout (default 10s) and RebalanceTimeout (default 60s) are
	// the group's; HeartbeatInterval defaults to 3s.
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	HeartbeatInterval time.Duration
	// RetryMax is the longest pause between retries of a failed batch;
	// default 10s (starting at 100ms, with jitter).
	RetryMax time.Duration
	// HandleTimeout bounds one Handle call (for a Stager: one batch, from
	// Stage to done), after shutdown began too; the end of the generation
	// (a revocation) cancels it at once. Default 45s. Keep it below
	// RebalanceTimeout.
	HandleTimeout time.Duration
	// MaxStaged bounds the batches of one partition a Stager holds at once
	// (staged, not yet committed); default 16. MaxStagedBytes bounds their
	// message bytes (a single larger batch is still staged alone); default
	// twice MaxBatchBytes. MaxStaged 1 drives a Stager one batch at a time
	// through Handle, like any other handler.
	MaxStaged      int
	MaxStagedBytes int
	Logger         *slog.Logger
	Metrics        *Metrics
}

// Validate fills defaults and reports the first bad field.
func (c *GroupConfig) Validate() error {
	if err := c.Conn.Validate(); err != nil {
		return err
	}
	if c.Topic == "" {
		return errors.New("consumer: topic is required")
	}
	if c.GroupID == "" {
		return errors.New("consumer: group id is required")
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
	def(&c.MaxBatchMessages, 20000)
	def(&c.MaxBatchBytes, 16<<20)
	def(&c.QueueCapacity, min(c.MaxBatchMessages, 2000))
	defd(&c.MaxWait, 500*time.Millisecond)
	defd(&c.TopicsMaxWait, c.MaxWait)
	defd(&c.SessionTimeout, 10*time.Second)
	defd(&c.RebalanceTimeout, 60*time.Second)
	defd(&c.HeartbeatInterval, 3*time.Second)
	defd(&c.RetryMax, 10*time.Second)
	defd(&c.HandleTimeout, 45*time.Second)
	def(&c.MaxStaged, 16)
	def(&c.MaxStagedBytes, 2*c.MaxBatchBytes)
	if c.HandleTimeout >= c.RebalanceTimeout {
		return fmt.Errorf("consumer: handle timeout %s must be below the rebalance timeout %s", c.HandleTimeout, c.RebalanceTimeout)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// Metrics of the consumer groups, labelled by group. The per-partition
// series (lag, last commit) exist while this member owns the partition, so
// summing them over workers never counts a partition twice.
type Metrics struct {
	lag        *prometheus.GaugeVec
	lastCommit *prometheus.GaugeVec
	retries    *prometheus.CounterVec
	commitErr  *prometheus.CounterVec
	assigned   *prometheus.GaugeVec
}

// NewMetrics creates the consumer metrics, registered with reg unless nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	part := []string{"group", "topic", "partition"}
	m := &Metrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_consumer_lag_messages",
			Help: "Messages behind the partition's high-water mark: set when a batch is fetched (it counts until committed) and after its commit.",
		}, part),
		lastCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_consumer_last_commit_timestamp_seconds",
			Help: "Unix time of the partition's last offset commit by this member, or of its assignment when nothing was committed since.",
		}, part),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_consumer_batch_retries_total", Help: "Failed batch attempts that were retried.",
		}, []string{"group"}),
		commitErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_consumer_commit_errors_total", Help: "Offset commits that failed (the next commit covers them).",
		}, []string{"group"}),
		assigned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_consumer_assigned_partitions", Help: "Partitions this member owns, of every topic the group consumes (the event topic and its routed copies' topic).",
		}, []string{"group"}),
	}
	if reg != nil {
		reg.MustRegister(m.lag, m.lastCommit, m.retries, m.commitErr, m.assigned)
	}
	return m
}

// group makes a group's series exist (at zero) before anything happens.
func (m *Metrics) group(id string) {
	m.retries.WithLabelValues(id)
	m.commitErr.WithLabelValues(id)
	m.assigned.WithLabelValues(id)
}

// Stager is a BatchHandler that can take the next batch of a partition
// while earlier ones are still being handled, so one slow delivery does
// not stop the partition. Stage takes msgs (it may wait for room in the
// handler's own bounded queues, until ctx ends) and returns done, which
// blocks until every message is handled (nil) or fails, or ctx ends. After
// an error from either, the group stages the same messages again.
//
// The group keeps fetching and staging while fewer than MaxStaged batches
// (and MaxStagedBytes) of the partition are staged and not committed, and
// commits in offset order: a batch's offsets once it and every earlier
// batch are done. Stage is never called twice at once for one partition
// (a handler may keep per-partition state, like a decoder, unlocked).
// When a batch fails, nothing after it is committed: the group stages
// again from that batch on, after a pause. A crash or a revocation
// redelivers what was staged and not committed, as with Handle; the end of
// the generation ends the contexts of the batches staged (except on
// shutdown, where each gets HandleTimeout from its staging). A Stager's
// Handle is used only when MaxStaged is 1.
type Stager interface {
	BatchHandler
	Stage(ctx context.Context, topic string, partition int, msgs []Message) (done func(context.Context) error, err error)
}

// Group runs one consumer group member.
type Group struct {
	cfg     GroupConfig
	handler BatchHandler
	ready   chan struct{}
	once    sync.Once

	mu      sync.Mutex
	waiting map[topicPartition]error // partitions whose resume point cannot be read yet, with the last error
}

type topicPartition struct {
	topic     string
	partition int
}

// NewGroup checks cfg and returns a Group that feeds handler.
func NewGroup(cfg GroupConfig, handler BatchHandler) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Metrics.group(cfg.GroupID)
	return &Group{cfg: cfg, handler: handler, ready: make(chan struct{}), waiting: map[topicPartition]error{}}, nil
}

// Waiting reports the partitions of this member that wait for their resume
// point (the handler's Assigned keeps failing, e.g. a ClickHouse replica of
// the partition's shard does not answer), with the last error of each, or
// nil when none waits.
func (g *Group) Waiting() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		return nil
	}
	parts := slices.SortedFunc(maps.Keys(g.waiting), func(a, b topicPartition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return a.partition - b.partition
	})
	errs := make([]error, len(parts))
	for i, p := range parts {
		errs[i] = fmt.Errorf("partition %d of %s waits for its resume point: %w", p.partition, p.topic, g.waiting[p])
	}
	return errors.Join(errs...)
}

func (g *Group) setWaiting(topic string, partition int, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := topicPartition{topic, partition}
	if err == nil {
		delete(g.waiting, k)
	} else {
		g.waiting[k] = err
	}
}

// Ready is closed once the member has joined the group the first time.
func (g *Group) Ready() <-chan struct{} { return g.ready }

// Run consumes until ctx is cancelled. On cancellation it stops fetching,
// lets in-flight batches finish (bounded by HandleTimeout) and commits them,
// then leaves the group. It returns nil after a clean shutdown.
func (g *Group) Run(ctx context.Context) error {
	dialer, err := g.cfg.Conn.Dialer()
	if err != nil {
		return err
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                g.cfg.GroupID,
		Brokers:           g.cfg.Conn.Brokers,
		Dialer:            dialer,
		Topics:            append([]string{g.cfg.Topic}, g.cfg.Topics...),
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    g.cfg.SessionTimeout,
		RebalanceTimeout:  g.cfg.RebalanceTimeout,
		HeartbeatInterval: g.cfg.HeartbeatInterval,
		JoinGroupBackoff:  time.Second,
		// A member that joins before the brokers know its topic (a worker
		// starting right after creating it) is given no partitions, and
		// kafka-go keeps that empty assignment until something else
		// rebalances the group. Watching the topic's partitions rejoins
		// once it appears; WaitUnowned catches what the watcher misses.
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 2 * time.Second,
		ErrorLogger:            kafka.LoggerFunc(func(msg string, args ...any) { g.cfg.Logger.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", g.cfg.GroupID, err)
	}
	defer cg.Close()
	for {
		gen, err := NextGeneration(ctx, cg, func(err error, pause time.Duration) {
			g.cfg.Logger.Warn("consumer group: next generation failed; retrying", "group", g.cfg.GroupID, "in", pause.Round(time.Millisecond), "err", err)
		})
		if err != nil {
			return nil // ctx ended or the group closed
		}
		g.once.Do(func() { close(g.ready) })
		parts := gen.Assignments[g.cfg.Topic]
		n := len(parts)
		for _, t := range g.cfg.Topics {
			n += len(gen.Assignments[t])
		}
		g.cfg.Metrics.assigned.WithLabelValues(g.cfg.GroupID).Set(float64(n))
		g.cfg.Logger.Info("consumer group: assigned", "group", g.cfg.GroupID, "generation", gen.ID, "partitions", n)
		for _, topic := range append([]string{g.cfg.Topic}, g.cfg.Topics...) {
			for _, a := range gen.Assignments[topic] {
				gen.Start(func(genCtx context.Context) {
					g.partition(ctx, genCtx, gen, topic, a.ID, a.Offset, dialer)
				})
			}
		}
		if len(parts) == 0 {
			gen.Start(func(genCtx context.Context) {
				WaitUnowned(genCtx, g.cfg.Conn, g.cfg.Topic, g.cfg.GroupID, g.cfg.Logger)
			})
		}
	}
}

// partition consumes one assigned partition until the generation ends or
// ctx (shutdown) is cancelled. It only returns then: an early return would
// end the generation for every partition.
func (g *Group) partition(ctx, genCtx context.Context, gen *kafka.Generation, topic string, partition int, committed int64, dialer *kafka.Dialer) {
	log := g.cfg.Logger.With("topic", topic, "partition", partition)
	// Work stops when the generation ends or shutdown starts; a Handle
	// already running is cancelled when the generation ends, except on
	// shutdown, where it gets HandleTimeout to finish.
	stop := genCtx
	if rv, ok := g.handler.(Revoker); ok {
		defer rv.Revoked(topic, partition)
	}
	var next int64
	ok := g.retry(stop, log, "resume", func() error {
		n, err := g.handler.Assigned(stop, topic, partition)
		next = n
		g.setWaiting(topic, partition, err)
		return err
	})
	g.setWaiting(topic, partition, nil)
	if !ok {
		<-genCtx.Done()
		return
	}
	start := startOffset(committed, next)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:       g.cfg.Conn.Brokers,
		Topic:         topic,
		Partition:     partition,
		Dialer:        dialer,
		MinBytes:      1,
		MaxBytes:      4 << 20, // one fetch response; the batch gathers several
		MaxWait:       FetchWait,
		QueueCapacity: g.cfg.QueueCapacity,
		ErrorLogger:   kafka.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) }),
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		log.Error("set offset", "offset", start, "err", err)
		<-genCtx.Done()
		return
	}
	log.Info("partition assigned", "committed", committed, "resume", next, "start", start)

	labels := prometheus.Labels{"group": g.cfg.GroupID, "topic": topic, "partition": fmt.Sprint(partition)}
	lag := g.cfg.Metrics.lag.With(labels)
	lastCommit := g.cfg.Metrics.lastCommit.With(labels)
	lastCommit.SetToCurrentTime() // the stall clock starts at assignment
	defer func() {
		// The partition's next owner reports it from now on.
		g.cfg.Metrics.lag.Delete(labels)
		g.cfg.Metrics.lastCommit.Delete(labels)
	}()
	if st, ok := g.handler.(Stager); ok && g.cfg.MaxStaged > 1 {
		g.staged(ctx, genCtx, gen, st, r, partition, log, lag, lastCommit)
		return
	}
	batch := make([]Message, 0, 256)
	for {
		if ctx.Err() != nil || genCtx.Err() != nil {
			return
		}
		var hwm int64
		batch, hwm = g.fetch(genCtx, r, batch[:0])
		if len(batch) == 0 {
			continue
		}
		if hwm > 0 {
			// Until committed the batch is still behind, so a batch that
			// keeps failing shows as lag.
			lag.Set(float64(max(hwm-batch[0].Offset, 0)))
		}
		ok := g.retry(genCtx, log, "handle batch", func() error {
			// Each attempt gets its own HandleTimeout: a long outage must
			// not leave later attempts with an expired context.
			handleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.HandleTimeout)
			defer cancel()
			// A generation that ends while this member is running (not
			// shutting down) may mean the member was expelled: a group
			// whose coordinator died rebalances without it, and the new
			// owner reads the marks at once. Finishing the batch then would
			// write it twice (seen with a broker kill: the batch waited on
			// its dead letters' dead leader, then inserted its events after
			// the new owner had started), so it is abandoned instead.
			// On shutdown the generation ends after ctx, and the batch gets
			// HandleTimeout to finish.
			defer context.AfterFunc(genCtx, func() {
				if ctx.Err() == nil {
					cancel()
				}
			})()
			first := batch[0].Offset
			handleCtx = WithOwnershipCheck(handleCtx, func() error {
				return gen.CommitOffsets(map[string]map[int]int64{topic: {partition: first}})
			})
			return g.handler.Handle(handleCtx, topic, partition, batch)
		})
		if !ok {
			// Revoked or shutting down while retrying: abandon the batch.
			// Nothing is committed; the next owner re-reads the marks.
			log.Info("abandoned batch on revocation", "first", batch[0].Offset, "last", batch[len(batch)-1].Offset)
			return
		}
		last := batch[len(batch)-1].Offset
		if hwm > 0 {
			lag.Set(float64(max(hwm-last-1, 0)))
		}
		if err := gen.CommitOffsets(map[string]map[int]int64{topic: {partition: last + 1}}); err != nil {
			// Not fatal: the rows are stored; a redelivery is skipped by
			// the handler's marks, and the next commit covers this one.
			g.cfg.Metrics.commitErr.WithLabelValues(g.cfg.GroupID).Inc()
			log.Warn("commit offsets failed", "offset", last+1, "err", err)
		} else {
			lastCommit.SetToCurrentTime()
		}
		clear(batch) // let the message bytes go
	}
}

// stagedBatch is a batch a Stager took and the group has not committed.
type stagedBatch struct {
	msgs  []Message
	hwm   int64
	bytes int
	// done waits for the batch; ctx bounds the staging and the wait by
	// HandleTimeout and ends with the generation (not with shutdown), as
	// Handle's context does.
	done   func(context.Context) error
	ctx    context.Context
	cancel func()
}

// staged drives a Stager until the generation ends or shutdown starts:
// windows of staged batches (stageWindow), and after a batch failed, a
// pause with backoff and a new window from that batch's first offset.
func (g *Group) staged(ctx, genCtx context.Context, gen *kafka.Generation, st Stager, r *kafka.Reader, partition int,
	log *slog.Logger, lag, lastCommit prometheus.Gauge) {
	p := g.retryPolicy()
	var from int64 = -1
	p.Notify = func(err error, pause time.Duration) {
		g.cfg.Metrics.retries.WithLabelValues(g.cfg.GroupID).Inc()
		log.Warn("handle batch failed; staging it again", "offset", from, "in", pause.Round(time.Millisecond), "err", err)
	}
	retry.Do(genCtx, p, func() error {
		if from >= 0 {
			if err := r.SetOffset(from); err != nil {
				log.Error("set offset", "offset", from, "err", err)
				<-genCtx.Done()
				return retry.Permanent(err)
			}
		}
		var progressed bool
		var err error
		from, progressed, err = g.stageWindow(ctx, genCtx, gen, st, r, partition, log, lag, lastCommit)
		if err == nil || ctx.Err() != nil || genCtx.Err() != nil {
			return nil
		}
		if progressed {
			return retry.Progressed(err)
		}
		return err
	})
}

// stageWindow fetches and stages batches (this goroutine: Stage is never
// called twice at once for a partition) while fewer than MaxStaged, and
// MaxStagedBytes, are staged and not committed; a committer waits for them
// in offset order and commits each in turn. It returns nil when shutdown
// started (after committing what was staged and done within its
// HandleTimeout) or the generation ended (what was not committed yet is
// abandoned). When a batch fails, nothing after it is committed: it
// returns the batch's first offset and error, and whether anything was
// committed before.
func (g *Group) stageWindow(ctx, genCtx context.Context, gen *kafka.Generation, st Stager, r *kafka.Reader, partition int,
	log *slog.Logger, lag, lastCommit prometheus.Gauge) (from int64, progressed bool, err error) {
	topic := r.Config().Topic
	stageCtx, stopStaging := context.WithCancel(genCtx)
	defer stopStaging()
	// Both channels hold at most MaxStaged entries: neither side blocks
	// on a send.
	queue := make(chan *stagedBatch, g.cfg.MaxStaged)
	freed := make(chan int, g.cfg.MaxStaged)
	type outcome struct {
		from       int64
		err        error
		progressed bool
	}
	result := make(chan outcome, 1)
	go func() {
		var o outcome
		o.from, o.progressed, o.err = g.commitStaged(genCtx, gen, topic, partition, log, lag, lastCommit, queue, freed, stopStaging)
		result <- o
	}()
	count, bytes := 0, 0
stage:
	for ctx.Err() == nil && stageCtx.Err() == nil {
		msgs, hwm := g.fetch(stageCtx, r, make([]Message, 0, 256))
		if len(msgs) == 0 {
			continue
		}
		if hwm > 0 && count == 0 {
			lag.Set(float64(max(hwm-msgs[0].Offset, 0)))
		}
		b := &stagedBatch{msgs: msgs, hwm: hwm}
		for _, m := range msgs {
			b.bytes += len(m.Key) + len(m.Value)
		}
		for {
			select {
			case n := <-freed:
				count, bytes = count-1, bytes-n
				continue
			default:
			}
			if count == 0 || (count < g.cfg.MaxStaged && bytes+b.bytes <= g.cfg.MaxStagedBytes) {
				break
			}
			select {
			case n := <-freed:
				count, bytes = count-1, bytes-n
			case <-stageCtx.Done():
				break stage
			}
		}
		if !g.retry(stageCtx, log, "stage batch", func() error { return g.stage(ctx, genCtx, st, topic, partition, b) }) {
			break
		}
		count, bytes = count+1, bytes+b.bytes
		queue <- b
	}
	close(queue)
	o := <-result
	return o.from, o.progressed, o.err
}

// stage hands b to the Stager with a context of its own: HandleTimeout
// from now, ended when the generation ends but not on shutdown (see
// partition).
func (g *Group) stage(ctx, genCtx context.Context, st Stager, topic string, partition int, b *stagedBatch) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.HandleTimeout)
	stop := context.AfterFunc(genCtx, func() {
		if ctx.Err() == nil {
			cancel()
		}
	})
	done, err := st.Stage(sctx, topic, partition, b.msgs)
	if err != nil {
		stop()
		cancel()
		return err
	}
	b.done, b.ctx, b.cancel = done, sctx, func() { stop(); cancel() }
	return nil
}

// commitStaged waits for staged batches in offset order and commits each
// that is done. At the first that fails it stops the staging and abandons
// the rest, and returns the failed batch's first offset and error.
func (g *Group) commitStaged(genCtx context.Context, gen *kafka.Generation, topic string, partition int, log *slog.Logger,
	lag, lastCommit prometheus.Gauge, queue <-chan *stagedBatch, freed chan<- int, stopStaging func()) (int64, bool, error) {
	progressed := false
	for b := range queue {
		err := b.done(b.ctx)
		b.cancel()
		if err != nil {
			stopStaging()
			for later := range queue {
				later.cancel()
			}
			if genCtx.Err() != nil {
				log.Info("abandoned batch on revocation", "first", b.msgs[0].Offset, "last", b.msgs[len(b.msgs)-1].Offset)
				return 0, progressed, nil
			}
			return b.msgs[0].Offset, progressed, err
		}
		last := b.msgs[len(b.msgs)-1].Offset
		if b.hwm > 0 {
			lag.Set(float64(max(b.hwm-last-1, 0)))
		}
		if err := gen.CommitOffsets(map[string]map[int]int64{topic: {partition: last + 1}}); err != nil {
			g.cfg.Metrics.commitErr.WithLabelValues(g.cfg.GroupID).Inc()
			log.Warn("commit offsets failed", "offset", last+1, "err", err)
		} else {
			lastCommit.SetToCurrentTime()
		}
		progressed = true
		clear(b.msgs) // let the message bytes go
		freed <- b.bytes
	}
	return 0, progressed, nil
}

// FetchWait is how long the brokers hold a fetch of bouncer's readers
// while the partition has nothing new (a fetch returns as soon as a
// message arrives). kafka-go gives the broker the wait less a margin for the
// round trip (a quarter of it under a second, else a second) and drops the
// connection when the answer is later; a new connection costs the broker
// its version, metadata and two offset requests. At 500ms (the margin
// 125ms) a busy machine made readers reconnect again and again: those
// requests were a quarter of the broker's CPU in a bench run. Batches do not
// wait on it: GroupConfig.MaxWait bounds how long a batch fills.
const FetchWait = 3 * time.Second

// startOffset is where a newly assigned partition is read from: the
// committed offset, or further when the handler already holds more (a crash
// after the write, before the commit); the log's start when neither knows
// anything. committed < 0 means the group has no commit for the partition.
func startOffset(committed, next int64) int64 {
	switch {
	case committed < 0 && next <= 0:
		return kafka.FirstOffset
	case committed < 0:
		return next
	}
	return max(committed, next)
}

// fetch blocks for a first message, then gathers more until a bound or
// MaxWait (backlogFill times MaxWait when the partition already holds a
// full batch past the first message: see backlogFill). It returns the batch
// and the partition's high-water mark.
func (g *Group) fetch(ctx context.Context, r *kafka.Reader, batch []Message) ([]Message, int64) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		if m, err = g.refetch(ctx, r, err); err != nil {
			return batch, 0 // ctx ended
		}
	}
	bytes := len(m.Value)
	hwm := m.HighWaterMark
	batch = append(batch, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time, Headers: m.Headers})
	waitCtx, cancel := context.WithTimeout(ctx, g.fillWait(m.Topic, m.Offset, m.HighWaterMark))
	defer cancel()
	for len(batch) < g.cfg.MaxBatchMessages && bytes < g.cfg.MaxBatchBytes {
		m, err := r.FetchMessage(waitCtx)
		if err != nil {
			break
		}
		bytes += len(m.Value)
		hwm = m.HighWaterMark
		batch = append(batch, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time, Headers: m.Headers})
	}
	return batch, hwm
}

// backlogFill multiplies MaxWait for a batch whose partition already holds
// the rest of it (a backlog): waiting for messages that are there adds no
// latency, while a batch cut short because the reader could not parse them
// within MaxWait (a worker short of CPU) makes one more, smaller insert
// downstream (a ClickHouse part, a commit). The bound stays for offsets
// that hold no message (transaction markers).
const backlogFill = 10

// fillWait is how long a batch of topic whose first message is at offset
// may wait to fill, the partition's high-water mark being hwm.
func (g *Group) fillWait(topic string, offset, hwm int64) time.Duration {
	wait := g.cfg.MaxWait
	if topic != g.cfg.Topic {
		wait = g.cfg.TopicsMaxWait
	}
	if hwm-offset > int64(g.cfg.MaxBatchMessages) {
		return backlogFill * wait
	}
	return wait
}

// retryPolicy is the pauses between attempts of a failed batch: 100ms
// growing to RetryMax, never giving up (the batch must land or be
// abandoned with its generation).
func (g *Group) retryPolicy() retry.Policy {
	return retry.Policy{Initial: 100 * time.Millisecond, Max: g.cfg.RetryMax}
}

// retry runs fn until it succeeds or ctx ends (retryPolicy); it reports
// whether fn succeeded.
func (g *Group) retry(ctx context.Context, log *slog.Logger, what string, fn func() error) bool {
	p := g.retryPolicy()
	p.Notify = func(err error, pause time.Duration) {
		g.cfg.Metrics.retries.WithLabelValues(g.cfg.GroupID).Inc()
		log.Warn(what+" failed; retrying", "in", pause.Round(time.Millisecond), "err", err)
	}
	return retry.Do(ctx, p, fn) == nil
}

// NextGeneration waits for the group's next generation, trying again after
// a failure (1s, doubling up to 10s, each ±20%; every call starts the
// pauses over, so a generation that came resets them) until ctx ends or the
// group closes; then it returns the last error. notify is told of each
// failure and the pause after it.
func NextGeneration(ctx context.Context, cg *kafka.ConsumerGroup, notify func(err error, pause time.Duration)) (*kafka.Generation, error) {
	return nextGeneration(ctx, cg, withNotify(nextPolicy, notify))
}

// FetchFirst fetches r's next message, trying again after a failure
// (500ms, doubling up to 5s, each ±20%; every call starts the pauses over,
// so a fetch that succeeded resets them) until ctx ends; then it returns
// ctx's error. notify is told of each failure and the pause after it.
func FetchFirst(ctx context.Context, r *kafka.Reader, notify func(err error, pause time.Duration)) (kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err == nil {
		return m, nil
	}
	return fetchAgain(ctx, r, err, withNotify(fetchPolicy, notify))
}

// refetch is FetchFirst after a fetch failed with err (the group's own
// fetch calls FetchMessage itself, so a fetch that succeeds costs what it
// did before the pauses were a Policy).
func (g *Group) refetch(ctx context.Context, r *kafka.Reader, err error) (kafka.Message, error) {
	return fetchAgain(ctx, r, err, withNotify(fetchPolicy, func(err error, pause time.Duration) {
		g.cfg.Logger.Warn("fetch failed", "topic", r.Config().Topic, "partition", r.Config().Partition, "in", pause.Round(time.Millisecond), "err", err)
	}))
}

// The pauses after a failed wait for a generation and after a failed fetch:
// the first as long as before they grew (1s, 500ms), then longer up to a
// cap, so a broker that is down is not asked twice a second by every
// partition's reader.
var (
	nextPolicy  = retry.Policy{Initial: time.Second, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2}
	fetchPolicy = retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
)

func withNotify(p retry.Policy, notify func(error, time.Duration)) retry.Policy {
	p.Notify = notify
	return p
}

func nextGeneration(ctx context.Context, cg interface {
	Next(context.Context) (*kafka.Generation, error)
}, p retry.Policy) (*kafka.Generation, error) {
	var gen *kafka.Generation
	err := retry.Do(ctx, p, func() error {
		var err error
		gen, err = cg.Next(ctx)
		if errors.Is(err, kafka.ErrGroupClosed) {
			return retry.Permanent(err)
		}
		return err
	})
	return gen, err
}

// fetchAgain pauses after a fetch that failed with failed, then fetches
// again as p says, until a fetch succeeds or ctx ends.
func fetchAgain(ctx context.Context, r interface {
	FetchMessage(context.Context) (kafka.Message, error)
}, failed error, p retry.Policy) (kafka.Message, error) {
	var m kafka.Message
	err := retry.Do(ctx, p, func() error {
		err := failed
		if failed != nil {
			failed = nil // the fetch the caller made
		} else {
			m, err = r.FetchMessage(ctx)
		}
		if err != nil && ctx.Err() != nil {
			return retry.Permanent(ctx.Err())
		}
		return err
	})
	return m, err
}

// Sleep waits d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool { return retry.Sleep(ctx, nil, d) }
