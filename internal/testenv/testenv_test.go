package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// These tests prove that the pinned combination (the Kafka broker that scripts/services runs,
// kafka-go v0.4.51, ClickHouse 18.16 and clickhouse-go v2) supports everything bouncer uses.

const (
	numMessages   = 1000
	numPartitions = 4
)

// produce writes numMessages distinct payloads with acks=all, spread round robin over the
// partitions, and returns the set of payloads.
func produce(t *testing.T, brokers, topic string) map[string]bool {
	t.Helper()
	w, err := consumer.NewWriter(consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, consumer.WriterConfig{BatchTimeout: 5 * time.Millisecond, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Errorf("writer close: %v", err)
		}
	}()
	want := make(map[string]bool, numMessages)
	msgs := make([]kafka.Message, 0, numMessages)
	for i := range numMessages {
		p := fmt.Sprintf(`{"n":%d}`, i)
		want[p] = true
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: []byte(p)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
	if st := w.Stats(); st.Messages != numMessages || st.Errors != 0 {
		t.Fatalf("writer stats: %d messages, %d errors; want %d, 0", st.Messages, st.Errors, numMessages)
	}
	return want
}

// endOffsets returns each partition's last offset (the high-water mark).
func endOffsets(t *testing.T, brokers, topic string) map[int]int64 {
	t.Helper()
	out := map[int]int64{}
	for p := range numPartitions {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := kafka.DialLeader(ctx, "tcp", testenv.Brokers(brokers)[0], topic, p)
		cancel()
		if err != nil {
			t.Fatalf("DialLeader %d: %v", p, err)
		}
		last, err := conn.ReadLastOffset()
		_ = conn.Close()
		if err != nil {
			t.Fatalf("ReadLastOffset %d: %v", p, err)
		}
		out[p] = last
	}
	return out
}

// committed joins the group as a fresh member and returns the offsets the coordinator hands out
// (the committed ones), then leaves.
func committed(t *testing.T, brokers, topic, group string) map[int]int64 {
	t.Helper()
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: testenv.Brokers(brokers), Topics: []string{topic},
		StartOffset: kafka.FirstOffset, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gen := next(ctx, t, cg)
	out := map[int]int64{}
	for _, a := range gen.Assignments[topic] {
		out[a.ID] = a.Offset
	}
	return out
}

func TestKafkaConsumerGroupGenerations(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, numPartitions)
	want := produce(t, brokers, topic)

	ends := endOffsets(t, brokers, topic)
	var total int64
	for p, end := range ends {
		if end == 0 {
			t.Errorf("partition %d is empty: round robin should fill all %d", p, numPartitions)
		}
		total += end
	}
	if total != numMessages {
		t.Fatalf("high-water marks sum to %d, want %d (%v)", total, numMessages, ends)
	}

	group := topic + ".g"
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: group, Brokers: testenv.Brokers(brokers), Topics: []string{topic},
		StartOffset: kafka.FirstOffset, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewConsumerGroup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	gen := next(ctx, t, cg)
	assigned := gen.Assignments[topic]
	if len(assigned) != numPartitions {
		t.Fatalf("sole member got %d partitions, want %d: %+v", len(assigned), numPartitions, assigned)
	}

	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, numPartitions)
	)
	for _, a := range assigned {
		if a.Offset != kafka.FirstOffset && a.Offset != 0 {
			t.Fatalf("new group: partition %d starts at %d, want first offset", a.ID, a.Offset)
		}
		wg.Add(1)
		gen.Start(func(gctx context.Context) {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{
				Brokers: testenv.Brokers(brokers), Topic: topic, Partition: a.ID,
				MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond,
			})
			defer r.Close()
			if err := r.SetOffset(a.Offset); err != nil {
				errs <- fmt.Errorf("partition %d SetOffset(%d): %w", a.ID, a.Offset, err)
				return
			}
			next := int64(-1)
			for next < ends[a.ID] {
				m, err := r.ReadMessage(gctx)
				if err != nil {
					errs <- fmt.Errorf("partition %d read at %d: %w", a.ID, next, err)
					return
				}
				mu.Lock()
				seen[string(m.Value)]++
				mu.Unlock()
				next = m.Offset + 1
				// Commit in a few steps, not just once at the end.
				if next%100 == 0 || next == ends[a.ID] {
					if err := gen.CommitOffsets(map[string]map[int]int64{topic: {a.ID: next}}); err != nil {
						errs <- fmt.Errorf("partition %d CommitOffsets(%d): %w", a.ID, next, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := cg.Close(); err != nil {
		t.Errorf("ConsumerGroup.Close: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}

	if len(seen) != numMessages {
		t.Errorf("consumed %d distinct payloads, want %d", len(seen), numMessages)
	}
	for p := range want {
		if seen[p] != 1 {
			t.Errorf("payload %s seen %d times, want once", p, seen[p])
			break
		}
	}

	got := committed(t, brokers, topic, group)
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(ends)) {
		t.Errorf("committed offsets after re-join = %v, want the end offsets %v", got, ends)
	}
}

func TestKafkaReaderWithGroupID(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, numPartitions)
	want := produce(t, brokers, topic)
	ends := endOffsets(t, brokers, topic)

	group := topic + ".r"
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: testenv.Brokers(brokers), GroupID: group, Topic: topic,
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 1 << 20,
		MaxWait: 100 * time.Millisecond, CommitInterval: 0, // synchronous commits
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	seen := map[string]int{}
	for len(seen) < numMessages {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			_ = r.Close()
			t.Fatalf("FetchMessage after %d distinct: %v", len(seen), err)
		}
		seen[string(m.Value)]++
		if err := r.CommitMessages(ctx, m); err != nil {
			_ = r.Close()
			t.Fatalf("CommitMessages: %v", err)
		}
	}
	if err := r.Close(); err != nil {
		t.Errorf("Reader.Close: %v", err)
	}
	for p := range want {
		if seen[p] != 1 {
			t.Errorf("payload %s seen %d times, want once", p, seen[p])
			break
		}
	}
	got := committed(t, brokers, topic, group)
	if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(ends)) {
		t.Errorf("committed offsets after re-join = %v, want the end offsets %v", got, ends)
	}
}

func TestKafkaAutoCreateTopic(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("test.autocreate.%d", time.Now().UnixNano())
	w, err := consumer.NewWriter(consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, consumer.WriterConfig{BatchTimeout: 5 * time.Millisecond, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil { // the first write can race the topic's leader election
		if err = w.WriteMessages(ctx, kafka.Message{Value: []byte("x")}); err == nil {
			break
		}
		if !errors.Is(err, kafka.LeaderNotAvailable) && !errors.Is(err, kafka.UnknownTopicOrPartition) {
			t.Fatalf("write to auto-created topic: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("write to auto-created topic: %v", err)
	}
	conn, err := kafka.Dial("tcp", testenv.Brokers(brokers)[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != numPartitions {
		t.Errorf("auto-created topic has %d partitions, want num.partitions=%d", len(ps), numPartitions)
	}
	_ = conn.DeleteTopics(topic)
}

func TestClickHouseMergeTreeBatch(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	conn := testenv.Open(t, addr, db)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	t.Logf("ClickHouse %s, database %s", version, db)

	err := conn.Exec(ctx, `CREATE TABLE events (
		day  Date,
		id   UInt64,
		kind String
	) ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY (day, id)`)
	if err != nil {
		t.Fatalf("CREATE TABLE (modern MergeTree syntax): %v", err)
	}

	const rows = 1000
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO events (day, id, kind)")
	if err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	base := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	var wantSum uint64
	for i := range rows {
		day := base.AddDate(0, 0, i%2) // two months, two partitions
		if err := batch.Append(day, uint64(i+1), fmt.Sprintf("kind%d", i%3)); err != nil {
			t.Fatalf("Append: %v", err)
		}
		wantSum += uint64(i + 1)
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send: %v", err)
	}

	var count, sum, parts uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(id), uniqExact(toYYYYMM(day)) FROM events").Scan(&count, &sum, &parts); err != nil {
		t.Fatalf("SELECT count: %v", err)
	}
	if count != rows || sum != wantSum || parts != 2 {
		t.Errorf("read back count=%d sum=%d months=%d; want %d, %d, 2", count, sum, parts, rows, wantSum)
	}
	var kind string
	var id uint64
	if err := conn.QueryRow(ctx, "SELECT id, kind FROM events WHERE id = ?", uint64(5)).Scan(&id, &kind); err != nil {
		t.Fatalf("SELECT with bound parameter: %v", err)
	}
	if id != 5 || kind != "kind1" {
		t.Errorf("row 5 = (%d, %q), want (5, \"kind1\")", id, kind)
	}
}

// next returns the group's next generation, retrying the errors kafka-go reports as temporary
// (for example GroupCoordinatorNotAvailable while the broker creates __consumer_offsets, or
// RebalanceInProgress), as every ConsumerGroup user must.
func next(ctx context.Context, t *testing.T, cg *kafka.ConsumerGroup) *kafka.Generation {
	t.Helper()
	for {
		gen, err := cg.Next(ctx)
		if err == nil {
			return gen
		}
		var kerr kafka.Error
		if !errors.As(err, &kerr) || !kerr.Temporary() || ctx.Err() != nil {
			t.Fatalf("ConsumerGroup.Next: %v", err)
		}
		t.Logf("ConsumerGroup.Next: %v (temporary, retrying)", err)
	}
}

func sorted(m map[int]int64) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%d:%d", k, v))
	}
	sort.Strings(out)
	return out
}
