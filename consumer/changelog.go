package consumer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/suppression"
)

// The suppression change log is a compacted Kafka topic: one message per
// list change, keyed "account/list/group/address" (the address normalised),
// so after compaction the topic holds the last change written of every
// entry, in the partition of its recipient (PartitionOf(account, address);
// logs written before that used the key's kafka.Hash, and an entry
// written under both layouts has a message in two partitions: readers keep
// the highest version, so both layouts read the same). An MTA mirrors the
// lists by reading it from the start; workers keep their in-memory index
// fresh the same way, and LoadSlice reads the changes of one partition.

// ChangeMessage is the JSON value of a change-log message.
type ChangeMessage struct {
	AccountID      string    `json:"account_id"`
	List           string    `json:"list"`
	GroupID        int64     `json:"group_id,omitempty"`
	Email          string    `json:"email"`
	EmailNorm      string    `json:"email_norm"`
	Deleted        bool      `json:"deleted"`
	At             time.Time `json:"at"`
	Version        uint64    `json:"version"`
	Reason         string    `json:"reason,omitempty"`
	Status         string    `json:"status,omitempty"`
	Classification string    `json:"bounce_classification,omitempty"`
	ReasonCode     string    `json:"reason_code,omitempty"`
	Source         string    `json:"source,omitempty"`
	// The position of the event that caused the change (src_topic "" for
	// changes made elsewhere): a worker's derived drops for events at or
	// before it in its partition do not count the change.
	SrcTopic     string `json:"src_topic,omitempty"`
	SrcPartition int    `json:"src_partition,omitempty"`
	SrcOffset    int64  `json:"src_offset,omitempty"`
	SrcIndex     int    `json:"src_index,omitempty"`
}

// ChangeKey is the compaction key of a change.
func ChangeKey(c suppression.Change) string {
	return c.AccountID + "/" + c.List + "/" + strconv.FormatInt(c.GroupID, 10) + "/" + c.EmailNorm
}

func toMessage(c suppression.Change) ChangeMessage {
	return ChangeMessage{AccountID: c.AccountID, List: c.List, GroupID: c.GroupID, Email: c.Email,
		EmailNorm: c.EmailNorm, Deleted: c.Deleted, At: c.At.UTC(), Version: c.Version(), Reason: c.Reason,
		Status: c.Status, Classification: c.Classification, ReasonCode: c.ReasonCode, Source: c.Source,
		SrcTopic: c.Src.Topic, SrcPartition: c.Src.Partition, SrcOffset: c.Src.Offset, SrcIndex: c.Src.Index}
}

func fromMessage(m ChangeMessage) suppression.Change {
	return suppression.Change{AccountID: m.AccountID, List: m.List, GroupID: m.GroupID, Email: m.Email,
		EmailNorm: m.EmailNorm, Deleted: m.Deleted, At: m.At, Reason: m.Reason, Status: m.Status,
		Classification: m.Classification, ReasonCode: m.ReasonCode, Source: m.Source,
		Src: suppression.Position{Topic: m.SrcTopic, Partition: m.SrcPartition, Offset: m.SrcOffset, Index: m.SrcIndex}}
}

// EnsureChangeLog creates the compacted change-log topic if missing. A
// change stays uncompacted for at least an hour (min.compaction.lag.ms):
// a worker that replays a partition's batches after its previous owner
// died decides them from the changes as they were, and a newer change of
// an entry (from a replayed event) must not have replaced an older one
// the replayed events still see in that time.
func EnsureChangeLog(ctx context.Context, c Conn, topic string, partitions int) error {
	return EnsureTopic(ctx, c, topic, partitions, kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"},
		kafka.ConfigEntry{ConfigName: "min.compaction.lag.ms", ConfigValue: "3600000"})
}

// ChangeWriter publishes suppression changes to the change log.
type ChangeWriter struct{ w *kafka.Writer }

var _ suppression.Publisher = (*ChangeWriter)(nil)

// NewChangeWriter returns a writer for the change-log topic.
func NewChangeWriter(c Conn, topic string) (*ChangeWriter, error) {
	// Up to 1,000 changes per produce request and partition, not 100
	// (kafka-go's default): each request costs the broker a round of its
	// own, and a batch of 10,000 events holds several hundred changes.
	// (kafka-go allocates a request's whole BatchSize up front, so not
	// more.) The bytes stay under the brokers' default message.max.bytes
	// (1 MiB); past them a request is split.
	w, err := NewWriter(c, topic, WriterConfig{BatchTimeout: 5 * time.Millisecond, BatchSize: 1000, BatchBytes: 900 << 10})
	if err != nil {
		return nil, err
	}
	// Each change in its recipient's partition (PartitionOf), so a worker
	// can load the slice of the recipients of its partitions.
	w.Balancer = changeBalancer{}
	return &ChangeWriter{w: w}, nil
}

// PublishChanges sends rows and returns when the brokers hold them.
func (w *ChangeWriter) PublishChanges(ctx context.Context, rows []suppression.Change) error {
	msgs := make([]kafka.Message, len(rows))
	for i, r := range rows {
		v, err := json.Marshal(toMessage(r))
		if err != nil {
			return err
		}
		msgs[i] = kafka.Message{Key: []byte(ChangeKey(r)), Value: v}
	}
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d suppression changes: %w", len(rows), err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *ChangeWriter) Close() error { return w.w.Close() }

// FollowMetrics are the metrics of a change-log follower (the in-memory
// suppression index of a worker or the api).
type FollowMetrics struct {
	lag *prometheus.GaugeVec
}

// NewFollowMetrics creates them, registered with reg unless nil.
func NewFollowMetrics(reg prometheus.Registerer) *FollowMetrics {
	m := &FollowMetrics{lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bouncer_suppression_index_lag_messages",
		Help: "Changes of the suppression change log not yet applied to this process's in-memory index, per partition, as of the last one read.",
	}, []string{"partition"})}
	if reg != nil {
		reg.MustRegister(m.lag)
	}
	return m
}

// FollowChanges reads every partition of the change log from its start and
// calls apply for each change, until ctx ends. caughtUp is closed once every
// partition has been read up to where it ended when following began.
// Malformed messages are logged and skipped. m may be nil.
func FollowChanges(ctx context.Context, c Conn, topic string, apply func(suppression.Change), caughtUp chan<- struct{}, m *FollowMetrics, log *slog.Logger) error {
	return followChanges(ctx, c, topic, apply, nil, caughtUp, m, log)
}

// followChanges is FollowChanges; seen, when set, is called with the next
// offset of a partition after each message (applied or skipped).
func followChanges(ctx context.Context, c Conn, topic string, apply func(suppression.Change), seen func(partition int, next int64), caughtUp chan<- struct{}, m *FollowMetrics, log *slog.Logger) error {
	if m == nil {
		m = NewFollowMetrics(nil)
	}
	dialer, err := c.Dialer()
	if err != nil {
		return err
	}
	parts, err := waitPartitions(ctx, dialer, c.Brokers, topic, log)
	if err != nil {
		return ctx.Err() // it retries until ctx ends
	}
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(len(parts))
	go func() { ready.Wait(); close(caughtUp) }()
	for _, p := range parts {
		wg.Add(1)
		go func(partition int) {
			defer wg.Done()
			followPartition(ctx, c, dialer, topic, partition, apply, seen, ready.Done, m.lag.WithLabelValues(strconv.Itoa(partition)), log)
		}(p.ID)
	}
	wg.Wait()
	return nil
}

// startupPause is the first pause before asking again for a change log's
// partitions or their ends (doubling up to a second): a topic the worker
// created a moment ago has a leader within a few hundred milliseconds.
const startupPause = 100 * time.Millisecond

// startupPolicy asks again after startupPause, doubling up to a second,
// until ctx ends; notify is told of each failure.
func startupPolicy(notify func(error)) retry.Policy {
	return retry.Policy{Initial: startupPause, Max: time.Second, Multiplier: 2, Jitter: retry.NoJitter,
		Notify: func(err error, _ time.Duration) { notify(err) }}
}

var errNoPartitions = errors.New("no partitions yet")

func followPartition(ctx context.Context, c Conn, dialer *kafka.Dialer, topic string, partition int, apply func(suppression.Change), seen func(int, int64), done func(), lag prometheus.Gauge, log *slog.Logger) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.Brokers, Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: FetchWait})
	defer r.Close()
	r.SetOffset(kafka.FirstOffset)
	var once sync.Once
	signal := func() { once.Do(done) }
	defer signal()
	// Where the partition ended when following began: reaching it means
	// the index holds everything written before.
	end := int64(-1)
	wait := startupPolicy(func(err error) {
		log.Warn("change log: reading partition end failed; retrying", "partition", partition, "err", err)
	})
	retry.Do(ctx, wait, func() error { // until it succeeds or ctx ends
		first, last, err := partitionOffsets(ctx, dialer, c.Brokers, topic, partition)
		if err != nil {
			return err
		}
		end = last
		lag.Set(float64(max(last-first, 0)))
		if first >= last {
			signal()
		}
		return nil
	})
	for ctx.Err() == nil {
		m, err := FetchFirst(ctx, r, func(err error, pause time.Duration) { // no group: nothing to commit
			log.Warn("change log: read failed; retrying", "partition", partition, "in", pause.Round(time.Millisecond), "err", err)
		})
		if err != nil {
			continue // ctx ended
		}
		var cm ChangeMessage
		if err := json.Unmarshal(m.Value, &cm); err != nil || cm.AccountID == "" || cm.EmailNorm == "" {
			log.Warn("change log: skipping a malformed message", "partition", partition, "offset", m.Offset)
		} else {
			apply(fromMessage(cm))
		}
		lag.Set(float64(max(m.HighWaterMark-m.Offset-1, 0)))
		if seen != nil {
			seen(partition, m.Offset+1)
		}
		if m.Offset+1 >= end {
			signal()
		}
	}
}

// OpenChangeLog creates the change-log topic when it is missing (compacted,
// with partitions) and returns a writer for it.
func OpenChangeLog(ctx context.Context, c Conn, topic string, partitions int) (*ChangeWriter, error) {
	if err := EnsureChangeLog(ctx, c, topic, partitions); err != nil {
		return nil, err
	}
	return NewChangeWriter(c, topic)
}

// IndexFollower is a suppression index that follows the change log.
type IndexFollower struct {
	// Index holds every change read so far.
	Index  *suppression.Index
	conn   Conn
	topic  string
	mu     sync.Mutex
	next   map[int]int64 // per partition, the offset after the last message read
	moved  chan struct{} // closed (and replaced) when next moves
	dialer *kafka.Dialer
}

func (f *IndexFollower) seen(partition int, next int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[partition] = next
	close(f.moved)
	f.moved = make(chan struct{})
}

// CatchUp returns once the index holds every change the change log held
// when CatchUp was called, or with an error when ctx ends first. A
// consumer calls it when it is assigned a partition, after reading where
// to resume: the changes the partition's previous owner announced before
// storing its last batch are then in the index, so the derived drops of
// the next events count them.
func (f *IndexFollower) CatchUp(ctx context.Context) error {
	ends := map[int]int64{}
	parts, err := listPartitions(ctx, f.dialer, f.conn.Brokers, f.topic)
	if err != nil {
		return fmt.Errorf("suppression change log %s: partitions: %w", f.topic, err)
	}
	for _, p := range parts {
		first, last, err := partitionOffsets(ctx, f.dialer, f.conn.Brokers, f.topic, p.ID)
		if err != nil {
			return fmt.Errorf("suppression change log %s/%d: end offset: %w", f.topic, p.ID, err)
		}
		if last > first {
			ends[p.ID] = last
		}
	}
	for {
		f.mu.Lock()
		behind := ""
		for p, end := range ends {
			if f.next[p] < end {
				behind = fmt.Sprintf("partition %d at %d of %d", p, f.next[p], end)
				break
			}
		}
		moved := f.moved
		f.mu.Unlock()
		if behind == "" {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("suppression index behind its change log %s (%s): %w", f.topic, behind, ctx.Err())
		}
	}
}

// FollowIndex follows the change-log topic into a new suppression index in
// the background (until ctx ends) and waits, at most 2 minutes, until the
// index holds everything the log held when following began, so that every
// answer it gives from then on counts the lists as they were at start or
// later. It returns nil, nil when ctx ends first.
func FollowIndex(ctx context.Context, conn Conn, topic string, reg prometheus.Registerer, log *slog.Logger) (*IndexFollower, error) {
	dialer, err := conn.Dialer()
	if err != nil {
		return nil, err
	}
	f := &IndexFollower{Index: suppression.New(), conn: conn, topic: topic, next: map[int]int64{}, moved: make(chan struct{}), dialer: dialer}
	caughtUp := make(chan struct{})
	m := NewFollowMetrics(reg)
	go func() {
		if err := followChanges(ctx, conn, topic, f.Index.Apply, f.seen, caughtUp, m, log); err != nil && ctx.Err() == nil {
			log.Error("suppression change log: cannot follow", "topic", topic, "err", err)
		}
	}()
	log.Info("loading suppression lists from the change log", "topic", topic)
	select {
	case <-caughtUp:
		log.Info("suppression lists loaded", "entries", f.Index.Len())
		return f, nil
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("suppression change log %s: not loaded after 2 minutes", topic)
	case <-ctx.Done():
		return nil, nil
	}
}

// LoadIndex is FollowIndex's index.
func LoadIndex(ctx context.Context, conn Conn, topic string, reg prometheus.Registerer, log *slog.Logger) (*suppression.Index, error) {
	f, err := FollowIndex(ctx, conn, topic, reg, log)
	if f == nil {
		return nil, err
	}
	return f.Index, nil
}

// LoadSlice reads one partition of the change log from its start to where
// it ended when LoadSlice began, calls apply for each change, and returns
// how many it applied. Malformed messages are skipped (counted as not
// applied). With the change log partitioned by PartitionOf, a partition's
// slice is the list changes of the recipients of that partition number.
func LoadSlice(ctx context.Context, c Conn, topic string, partition int, apply func(suppression.Change)) (int, error) {
	dialer, err := c.Dialer()
	if err != nil {
		return 0, err
	}
	first, end, err := partitionOffsets(ctx, dialer, c.Brokers, topic, partition)
	if err != nil {
		return 0, fmt.Errorf("change log %s/%d: offsets: %w", topic, partition, err)
	}
	if first >= end {
		return 0, nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.Brokers, Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: FetchWait})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return 0, err
	}
	n := 0
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return n, fmt.Errorf("change log %s/%d: read: %w", topic, partition, err)
		}
		var cm ChangeMessage
		if err := json.Unmarshal(m.Value, &cm); err == nil && cm.AccountID != "" && cm.EmailNorm != "" {
			apply(fromMessage(cm))
			n++
		}
		if m.Offset+1 >= end {
			return n, nil
		}
	}
}

// onAnyBroker calls fn with each bootstrap broker in turn until one
// answers: a dead first broker must not stop a worker that the others
// could serve.
func onAnyBroker(brokers []string, fn func(addr string) error) error {
	var errs []error
	for _, b := range brokers {
		err := fn(b)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// listPartitions asks any bootstrap broker (the first that answers) for
// topic's partitions, once.
func listPartitions(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string) ([]kafka.Partition, error) {
	var parts []kafka.Partition
	err := onAnyBroker(brokers, func(addr string) error {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		parts, err = conn.ReadPartitions(topic)
		return err
	})
	return parts, err
}

// waitPartitions is listPartitions asked again (startupPolicy) until the
// partitions show or ctx ends: a topic created a moment ago may not be in
// every broker's metadata yet (a worker that just created the change log
// waits for this before consuming, so the first pauses are brief).
func waitPartitions(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string, log *slog.Logger) ([]kafka.Partition, error) {
	var parts []kafka.Partition
	wait := startupPolicy(func(err error) { log.Warn("change log: no partitions yet; retrying", "topic", topic, "err", err) })
	if err := retry.Do(ctx, wait, func() (err error) {
		parts, err = listPartitions(ctx, dialer, brokers, topic)
		if len(parts) == 0 {
			return cmp.Or(err, errNoPartitions)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("change log %s: %w", topic, err)
	}
	return parts, nil
}

// partitionOffsets asks a partition's leader (found through any broker)
// for its first and end offsets.
func partitionOffsets(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string, partition int) (first, end int64, err error) {
	err = onAnyBroker(brokers, func(addr string) error {
		lc, err := dialer.DialLeader(ctx, "tcp", addr, topic, partition)
		if err != nil {
			return err
		}
		defer lc.Close()
		first, end, err = lc.ReadOffsets()
		return err
	})
	return first, end, err
}
