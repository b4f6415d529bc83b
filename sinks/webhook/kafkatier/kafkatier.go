// Package kafkatier keeps webhook batches that failed in Kafka: one delay
// topic per step of the retry schedule (PREFIX.retry.5s, PREFIX.retry.5m,
// ...) and a dead-letter topic (PREFIX.dlq) for batches given up, which
// RunDeadLetters copies into the failed-batches store (ClickHouse) the API
// lists and replays from.
//
// # Guarantees
//
// Writer returns only when the brokers hold the batches (all in-sync
// replicas), so the webhook group may commit the events they carry; a
// retry survives any worker restart. Giving up needs Kafka only: while the
// failed-batches store is down, RunDeadLetters waits and copies the dead
// letters once it is back. Messages are keyed by webhook-id, so
// copies of one batch land in one partition of a tier and are handled one
// after the other. Tiers consumes each tier topic in its own consumer
// group: per partition, in order, it waits until a batch is due, hands it
// to the dispatcher and commits only once the batch was delivered, parked
// in a later tier or given up. When a partition is revoked its goroutine
// finishes the attempt in flight before the member rejoins, so the next
// owner never sends the same batch at the same time.
package kafkatier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/subscription"
)

// Topics names the topics of a schedule.
type Topics struct {
	// Prefix starts every topic name; default "bouncer.webhooks".
	Prefix string
	Delays []time.Duration
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return "bouncer.webhooks"
	}
	return t.Prefix
}

// Tier is the topic of step i of the schedule.
func (t Topics) Tier(i int) string {
	return t.prefix() + ".retry." + webhook.TierName(t.Delays[i])
}

// DeadLetters is the topic of batches given up.
func (t Topics) DeadLetters() string { return t.prefix() + ".dlq" }

// All lists every topic, tiers first.
func (t Topics) All() []string {
	var out []string
	for i := range t.Delays {
		out = append(out, t.Tier(i))
	}
	return append(out, t.DeadLetters())
}

// Ensure creates the topics that are missing.
func Ensure(ctx context.Context, c consumer.Conn, t Topics, partitions int) error {
	for _, name := range t.All() {
		if err := consumer.EnsureTopic(ctx, c, name, partitions); err != nil {
			return err
		}
	}
	return nil
}

// FailedStore keeps given-up batches where the API lists and replays them
// (sinks/clickhouse implements it).
type FailedStore interface {
	WriteFailedBatches(ctx context.Context, rows []subscription.FailedBatch) error
}

// Writer is the dispatcher's Parker. It needs Kafka only: a given-up batch
// is in the dead-letter topic when GiveUp returns, and RunDeadLetters
// copies it into the FailedStore, so giving up works while that store
// (ClickHouse) is down.
type Writer struct {
	w      *kafka.Writer
	topics Topics
}

var _ webhook.Parker = (*Writer)(nil)

// NewWriter returns a Writer for the topics of t.
func NewWriter(c consumer.Conn, t Topics) (*Writer, error) {
	w, err := consumer.NewWriter(c, "", consumer.WriterConfig{BatchTimeout: 2 * time.Millisecond, BatchSize: 1000, BatchBytes: 16 << 20})
	if err != nil {
		return nil, err
	}
	return &Writer{topics: t, w: w}, nil
}

// Retry produces each batch to its tier topic.
func (w *Writer) Retry(ctx context.Context, batches []*webhook.Batch) error {
	msgs := make([]kafka.Message, 0, len(batches))
	for _, b := range batches {
		if b.Tier < 0 || b.Tier >= len(w.topics.Delays) {
			return fmt.Errorf("webhook batch %s: tier %d outside the schedule", b.WebhookID, b.Tier)
		}
		m, err := message(w.topics.Tier(b.Tier), b)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return w.write(ctx, msgs)
}

// GiveUp produces batches to the dead-letter topic; RunDeadLetters
// records them in the failed store.
func (w *Writer) GiveUp(ctx context.Context, batches []*webhook.Batch) error {
	msgs := make([]kafka.Message, 0, len(batches))
	for _, b := range batches {
		m, err := message(w.topics.DeadLetters(), b)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return w.write(ctx, msgs)
}

// DeadLetterConfig configures the consumer of the dead-letter topic.
type DeadLetterConfig struct {
	Conn   consumer.Conn
	Topics Topics
	// Group is the webhook group's id; the dead letters are consumed by
	// group Group+".dlq".
	Group string
	// Logger and Metrics (the consumer groups' metrics: lag, retries) are
	// optional.
	Logger  *slog.Logger
	Metrics *consumer.Metrics
	// OnBad is called for a message that is not a batch (it is skipped).
	OnBad func(topic string, partition int, offset int64, err error)
	// Clock dates a dead letter that carries no time; default the real
	// clock.
	Clock clockwork.Clock
}

// RunDeadLetters copies the batches of the dead-letter topic into store
// until ctx ends: one insert per consumed batch, committed after the
// insert, retried (with backoff, for as long as it takes) while the store
// fails. A batch copied twice (a crash between the insert and the commit)
// is one row to readers: the failed-batches table keeps the newest write
// of each webhook-id. Replays of the rows go to the first retry tier of
// cfg.Topics.
func RunDeadLetters(ctx context.Context, cfg DeadLetterConfig, store FailedStore) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	h := &deadLetters{store: store, replayTopic: cfg.Topics.Tier(0), log: log, onBad: cfg.OnBad, clock: cfg.Clock}
	g, err := consumer.NewGroup(consumer.GroupConfig{Conn: cfg.Conn, Topic: cfg.Topics.DeadLetters(), GroupID: cfg.Group + ".dlq",
		MaxBatchMessages: 500, MaxWait: 200 * time.Millisecond, QueueCapacity: 100, Logger: log, Metrics: cfg.Metrics}, h)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

// deadLetters is the handler of the dead-letter topic's group.
type deadLetters struct {
	store       FailedStore
	replayTopic string
	log         *slog.Logger
	onBad       func(topic string, partition int, offset int64, err error)
	clock       clockwork.Clock
}

func (h *deadLetters) Assigned(context.Context, string, int) (int64, error) { return 0, nil }

func (h *deadLetters) Handle(ctx context.Context, topic string, partition int, msgs []consumer.Message) error {
	rows := make([]subscription.FailedBatch, 0, len(msgs))
	for _, m := range msgs {
		b, err := webhook.UnmarshalBatch(m.Value)
		if err == nil {
			var row subscription.FailedBatch
			// The time it was given up, the same on every copy.
			at := m.Time
			if at.IsZero() {
				at = h.clock.Now()
			}
			if row, err = failedRecord(b, h.replayTopic, at); err == nil {
				rows = append(rows, row)
				continue
			}
		}
		h.log.Error("webhook dead letters: skipping a message that is not a webhook batch", "topic", topic, "partition", partition, "offset", m.Offset, "err", err)
		if h.onBad != nil {
			h.onBad(topic, partition, m.Offset, err)
		}
	}
	if err := h.store.WriteFailedBatches(ctx, rows); err != nil {
		return fmt.Errorf("record %d failed webhook batches: %w", len(rows), err)
	}
	return nil
}

// failedRecord is the record of a given-up batch: replays go to
// replayTopic, the first retry tier of this worker's schedule.
func failedRecord(b *webhook.Batch, replayTopic string, at time.Time) (subscription.FailedBatch, error) {
	raw, err := b.Marshal()
	if err != nil {
		return subscription.FailedBatch{}, fmt.Errorf("encode webhook batch %s: %w", b.WebhookID, err)
	}
	return subscription.FailedBatch{FailedAt: at, AccountID: b.AccountID, EndpointID: b.EndpointID, WebhookID: b.WebhookID,
		Attempts: b.Attempts, Reason: b.Reason, LastStatus: b.LastStatus, LastError: b.LastError, Events: len(b.Events),
		Batch: raw, ReplayTopic: replayTopic}, nil
}

// Headers of a parked batch, so tools can read them without decoding.
const (
	HeaderEndpoint = "bouncer-webhook-endpoint"
	HeaderDue      = "bouncer-webhook-due"
	HeaderAttempts = "bouncer-webhook-attempts"
	HeaderReason   = "bouncer-webhook-reason"
)

func message(topic string, b *webhook.Batch) (kafka.Message, error) {
	v, err := b.Marshal()
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode webhook batch %s: %w", b.WebhookID, err)
	}
	h := []kafka.Header{
		{Key: HeaderEndpoint, Value: []byte(b.EndpointID)},
		{Key: HeaderDue, Value: []byte(b.Due.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderAttempts, Value: []byte(strconv.Itoa(b.Attempts))},
	}
	if b.Reason != "" {
		h = append(h, kafka.Header{Key: HeaderReason, Value: []byte(b.Reason)})
	}
	return kafka.Message{Topic: topic, Key: []byte(b.WebhookID), Value: v, Headers: h}, nil
}

func (w *Writer) write(ctx context.Context, msgs []kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d webhook batches: %w", len(msgs), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *Writer) Close() error { return w.w.Close() }

// Redeliverer is what the tiers hand due batches to (the dispatcher).
type Redeliverer interface {
	Redeliver(ctx context.Context, batches []*webhook.Batch) error
}

// TierConfig configures the consumers of the tier topics.
type TierConfig struct {
	Conn   consumer.Conn
	Topics Topics
	// Group is the webhook group's id; tier i is consumed by group
	// Group+"."+tier topic suffix ("bouncer-webhooks.retry.5s").
	Group string
	// MaxBatch bounds the due batches handed over at once; default 50.
	MaxBatch int
	// SessionTimeout default 10s; RebalanceTimeout default 60s.
	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	Logger           *slog.Logger
	Metrics          *webhook.Metrics
	// OnBad is called for a message that is not a batch (it is skipped).
	OnBad func(topic string, partition int, offset int64, err error)
	// Clock says when a batch is due and waits for it; default the real
	// clock. (Pauses before retrying a failed fetch, write or redelivery
	// are not on it.)
	Clock clockwork.Clock
}

// GroupOf is the consumer group of tier i.
func (c TierConfig) GroupOf(i int) string {
	return c.Group + ".retry." + webhook.TierName(c.Topics.Delays[i])
}

// RunTiers consumes every tier until ctx ends.
func RunTiers(ctx context.Context, cfg TierConfig, d Redeliverer) error {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 50
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.RebalanceTimeout <= 0 {
		cfg.RebalanceTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = webhook.NewMetrics(nil)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	// Batches due far later than a tier's delay are moved to the back
	// (tierPartition.repark) with this writer.
	w, err := NewWriter(cfg.Conn, cfg.Topics)
	if err != nil {
		return err
	}
	defer w.Close()
	// Equal delays share one topic and one consumer.
	started := map[string]bool{}
	errs := make(chan error, len(cfg.Topics.Delays))
	for i := range cfg.Topics.Delays {
		if started[cfg.Topics.Tier(i)] {
			continue
		}
		started[cfg.Topics.Tier(i)] = true
		go func() { errs <- runTier(ctx, cfg, i, d, w) }()
	}
	var all []error
	for range started {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

func runTier(ctx context.Context, cfg TierConfig, i int, d Redeliverer, w *Writer) error {
	dialer, err := cfg.Conn.Dialer()
	if err != nil {
		return err
	}
	topic, group := cfg.Topics.Tier(i), cfg.GroupOf(i)
	log := cfg.Logger.With("topic", topic, "group", group)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: cfg.Conn.Brokers, Dialer: dialer, Topics: []string{topic},
		StartOffset: kafka.FirstOffset, SessionTimeout: cfg.SessionTimeout, RebalanceTimeout: cfg.RebalanceTimeout,
		HeartbeatInterval: 3 * time.Second, JoinGroupBackoff: time.Second,
		// A group that joins before the brokers know its topic (a worker
		// starting right after Ensure created it) is given no partitions,
		// and kafka-go keeps that empty assignment until something else
		// rebalances the group: the tier's batches would never come back.
		// Watching the topic's partitions rejoins once it appears (or
		// grows); consumer.WaitUnowned catches an appearance the watcher misses.
		WatchPartitionChanges: true, PartitionWatchInterval: 2 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) { log.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", group, err)
	}
	defer cg.Close()
	tierName := webhook.TierName(cfg.Topics.Delays[i])
	for {
		gen, err := consumer.NextGeneration(ctx, cg, func(err error, pause time.Duration) {
			log.Warn("retry tier: next generation failed; retrying", "in", pause.Round(time.Millisecond), "err", err)
		})
		if err != nil {
			return nil // ctx ended or the group closed
		}
		for _, a := range gen.Assignments[topic] {
			p := &tierPartition{cfg: cfg, d: d, w: w, topic: topic, partition: a.ID, tier: tierName, delay: cfg.Topics.Delays[i], log: log.With("partition", a.ID)}
			start := a.Offset
			gen.Start(func(genCtx context.Context) { p.run(ctx, genCtx, gen, start, dialer) })
		}
		if len(gen.Assignments[topic]) == 0 {
			gen.Start(func(genCtx context.Context) { consumer.WaitUnowned(genCtx, cfg.Conn, topic, group, log) })
		}
	}
}

type tierPartition struct {
	cfg       TierConfig
	d         Redeliverer
	w         *Writer
	topic     string
	partition int
	tier      string
	delay     time.Duration
	log       *slog.Logger
}

// horizon is how far ahead a batch parked in the tier now can be due: its
// delay, jittered by up to 10%, with room to spare. A batch due later
// (a long Retry-After, the copy of a slow attempt due after the attempt's
// deadline) would hold back the batches written after it, which are due
// sooner.
func (p *tierPartition) horizon() time.Duration { return p.delay + p.delay/5 + time.Second }

// repark writes b again, at the back of the tier its remaining wait fits
// (the longest delay not longer than it), so the batches behind it are
// not held back; the caller then commits past the old copy. It retries
// until the write succeeds, and reports false when the generation ended
// first.
func (p *tierPartition) repark(ctx context.Context, b *webhook.Batch) bool {
	wait := p.cfg.Clock.Until(b.Due)
	b.Tier = 0
	for i, d := range p.cfg.Topics.Delays {
		if d <= wait {
			b.Tier = i
		}
	}
	every := retry.Every(time.Second)
	every.Notify = func(err error, _ time.Duration) {
		p.log.Warn("retry tier: moving a batch due much later to the back failed; trying again", "webhook_id", b.WebhookID, "err", err)
	}
	if err := retry.Do(ctx, every, func() error { return p.w.Retry(ctx, []*webhook.Batch{b}) }); err != nil {
		return false
	}
	p.log.Info("retry tier: moved a batch due much later to the back", "webhook_id", b.WebhookID, "endpoint", b.EndpointID,
		"due", b.Due, "to", p.cfg.Topics.Tier(b.Tier))
	return true
}

// run consumes one partition of a tier until the generation ends.
func (p *tierPartition) run(ctx, genCtx context.Context, gen *kafka.Generation, committed int64, dialer *kafka.Dialer) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: p.cfg.Conn.Brokers, Topic: p.topic, Partition: p.partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 500 * time.Millisecond, QueueCapacity: 20, // 9 tiers x partitions readers: keep each small
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) { p.log.Debug(fmt.Sprintf(msg, args...)) }),
	})
	defer r.Close()
	start := committed
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		p.log.Error("retry tier: set offset", "offset", start, "err", err)
		<-genCtx.Done()
		return
	}
	// The metrics show the batch this goroutine waits on, until the
	// partition moves to another member.
	m := p.cfg.Metrics
	m.ParkedNone(p.tier, p.partition)
	defer m.ParkedGone(p.tier, p.partition)
	var head *kafka.Message // fetched, not yet handled
	for ctx.Err() == nil && genCtx.Err() == nil {
		if head == nil {
			m.ParkedNone(p.tier, p.partition)
			m, err := consumer.FetchFirst(genCtx, r, func(err error, pause time.Duration) {
				p.log.Warn("retry tier: fetch failed", "in", pause.Round(time.Millisecond), "err", err)
			})
			if err != nil {
				continue // the generation ended
			}
			head = &m
		}
		first, err := webhook.UnmarshalBatch(head.Value)
		if err != nil {
			p.bad(head, err)
			p.commit(gen, head.Offset)
			head = nil
			continue
		}
		p.cfg.Metrics.TierLag(p.tier, max(head.HighWaterMark-head.Offset-1, 0))
		m.ParkedHead(p.tier, p.partition, head.Time, first.Due)
		if first.Due.After(p.cfg.Clock.Now().Add(p.horizon())) {
			// Due later than anything written behind it: wait for it only
			// while nothing is behind it; once something is, move it to the
			// back, so one endpoint's long Retry-After delays no one else.
			fctx, cancel := clockwork.WithDeadline(genCtx, p.cfg.Clock, first.Due)
			next, err := r.FetchMessage(fctx)
			cancel()
			if err == nil {
				if !p.repark(genCtx, first) {
					return
				}
				p.commit(gen, head.Offset)
				head = &next
				continue
			}
			if genCtx.Err() != nil {
				return
			}
		}
		if !retry.Sleep(genCtx, p.cfg.Clock, p.cfg.Clock.Until(first.Due)) {
			return // revoked while waiting: the next owner takes over
		}
		// Gather more batches that are already due, without waiting.
		batches := []*webhook.Batch{first}
		last := head.Offset
		head = nil
		for len(batches) < p.cfg.MaxBatch {
			fctx, cancel := context.WithTimeout(genCtx, 5*time.Millisecond)
			m, err := r.FetchMessage(fctx)
			cancel()
			if err != nil {
				break
			}
			b, err := webhook.UnmarshalBatch(m.Value)
			if err != nil {
				p.bad(&m, err)
				last = m.Offset
				continue
			}
			if b.Due.After(p.cfg.Clock.Now()) {
				head = &m
				break
			}
			batches = append(batches, b)
			last = m.Offset
		}
		// Hand over and wait, even when revoked meanwhile: the attempts are
		// bounded by the dispatcher's timeouts, and the next owner must
		// not start before they end.
		every := retry.Every(2 * time.Second)
		every.Notify = func(err error, _ time.Duration) {
			p.log.Warn("retry tier: redelivery failed; trying again", "batches", len(batches), "err", err)
		}
		if err := retry.Do(genCtx, every, func() error { return p.d.Redeliver(context.WithoutCancel(ctx), batches) }); err != nil {
			return
		}
		p.commit(gen, last)
	}
}

func (p *tierPartition) bad(m *kafka.Message, err error) {
	p.log.Error("retry tier: skipping a message that is not a webhook batch", "offset", m.Offset, "err", err)
	if p.cfg.OnBad != nil {
		p.cfg.OnBad(p.topic, p.partition, m.Offset, err)
	}
}

func (p *tierPartition) commit(gen *kafka.Generation, offset int64) {
	if err := gen.CommitOffsets(map[string]map[int]int64{p.topic: {p.partition: offset + 1}}); err != nil {
		p.log.Warn("retry tier: commit failed (the next commit covers it)", "offset", offset+1, "err", err)
	}
}

// ReplayTo produces batches to one topic (a first retry tier named in a
// failed batch's record), for the API's replays.
func (w *Writer) ReplayTo(ctx context.Context, topic string, batches []*webhook.Batch) error {
	msgs := make([]kafka.Message, 0, len(batches))
	for _, b := range batches {
		m, err := message(topic, b)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return w.write(ctx, msgs)
}
