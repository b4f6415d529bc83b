package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

var _ pipeline.Sink = (*Store)(nil)

// HighWater returns the highest offsets of a partition held by the events
// and dead_letters tables (-1 when none). It first waits for inserts of the
// partition still running on the server (inflight.go), so the marks
// include or exclude them for good.
func (s *Store) HighWater(ctx context.Context, topic string, partition int) (pipeline.Marks, error) {
	if err := s.waitWrites(ctx, topic, partition); err != nil {
		return pipeline.Marks{}, err
	}
	ev, err := s.highWater(ctx, qEventsHighWater, "events", topic, partition)
	if err != nil {
		return pipeline.Marks{}, err
	}
	dl, err := s.highWater(ctx, qDeadLettersHighWater, "dead_letters", topic, partition)
	if err != nil {
		return pipeline.Marks{}, err
	}
	return pipeline.Marks{Events: ev, DeadLetters: dl}, nil
}

// RoutedMarks returns, for a partition of a routed topic (consumer.RoutedTopic),
// the highest source offset stored per source partition
// (pipeline.RoutedMarker). Like HighWater it first waits for inserts of the
// partition still running on the server; on a cluster it reads every
// replica of the partition's shard and keeps the highest of each.
func (s *Store) RoutedMarks(ctx context.Context, topic string, partition int) (map[int]int64, error) {
	if err := s.waitWrites(ctx, topic, partition); err != nil {
		return nil, err
	}
	out := map[int]int64{}
	read := func(conn driver.Conn, sql string) error {
		rows, err := conn.Query(ctx, sql, topic, uint32(partition))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p uint32
			var o uint64
			if err := rows.Scan(&p, &o); err != nil {
				return err
			}
			if cur, ok := out[int(p)]; !ok || int64(o) > cur {
				out[int(p)] = int64(o)
			}
		}
		return rows.Err()
	}
	q := qEventsRoutedMarks
	if s.cluster == nil {
		if err := read(s.conn, q.SQL); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		return out, nil
	}
	sh := s.cluster.shardOf(partition)
	sql := localSQL(q, "events")
	for _, r := range sh.replicas {
		if slices.Contains(s.cfg.LostReplicas, r.addr) {
			continue
		}
		if err := read(r.conn, sql); err != nil {
			return nil, resumeReplicaError(q, sh, r, partition, err)
		}
	}
	return out, nil
}

func (s *Store) highWater(ctx context.Context, q Query, table, topic string, partition int) (int64, error) {
	if s.cluster != nil {
		return s.clusterHighWater(ctx, q, table, topic, partition)
	}
	var n, hi uint64
	if err := s.conn.QueryRow(ctx, q.SQL, topic, uint32(partition)).Scan(&n, &hi); err != nil {
		return 0, fmt.Errorf("%s: %w", q.Name, err)
	}
	if n == 0 {
		return -1, nil
	}
	return int64(hi), nil
}

// insert sends one batch built by fill; a failed batch is dropped, never
// re-sent.
func (s *Store) insert(ctx context.Context, q Query, fill func(b driver.Batch) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	batch, err := s.conn.PrepareBatch(ctx, q.SQL)
	if err != nil {
		return fmt.Errorf("%s: prepare: %w", q.Name, err)
	}
	if err := fill(batch); err != nil {
		batch.Abort()
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("%s: send: %w", q.Name, err)
	}
	return nil
}

// appendColumns appends one slice per column, in order.
func appendColumns(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// ingestTime is the ingest date (the partition key of the tables written
// to) and the ingest time (whole seconds) of a write starting now.
func (s *Store) ingestTime() (date, at time.Time) {
	now := s.cfg.Now().UTC()
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC), now.Truncate(time.Second)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// maxInsertRows caps the rows of one merged insert; insertLinger is the
// longest a write waits for those of the other busy partitions
// (groupCommit), and a partition counts as busy for activeWindow after its
// last events write.
const (
	maxInsertRows = 50_000
	insertLinger  = time.Second
	activeWindow  = 10 * time.Second
)

// writers are the Store's group commits: events and dead letters per shard
// (their blocks go to the shard of their Kafka partition), suppression
// changes and recipient history for the whole store.
type writers struct {
	once         sync.Once
	events       []*groupCommit[pipeline.Row]
	deadLetters  []*groupCommit[schemas.DeadLetter]
	suppressions *groupCommit[suppression.Change]
	history      *groupCommit[pipeline.HistoryEvent]
	set          *writerSet // the Kafka partitions writing (a routed partition is one of its own)
}

func (s *Store) writers() *writers {
	w := &s.w
	w.once.Do(func() {
		w.set = newWriterSet()
		shards := 1
		if s.cluster != nil {
			shards = len(s.cluster.shards)
		}
		for i := range shards {
			ev := &eventBlock{}
			// Every busy partition of the shard: wherever it is, its
			// events come next.
			inShard := func(p pipeline.Writer, _ int) bool { return s.shardIndex(p.Partition) == i }
			w.events = append(w.events, newGroupCommit(maxInsertRows, insertLinger, w.set, inShard,
				func(ctx context.Context, parts [][]pipeline.Row) error {
					return s.insertEventsWithSides(ctx, ev, parts)
				}))
			// Dead letters are rare: they never wait for others.
			w.deadLetters = append(w.deadLetters, newGroupCommit(maxInsertRows, 0, nil, nil, s.insertDeadLetters))
		}
		// Only partitions in no commit: one waiting in another commit
		// (its events, or its history while it has no list changes) does
		// not come here before that one's insert (groupCommit).
		free := func(_ pipeline.Writer, parked int) bool { return parked == 0 }
		w.suppressions = newGroupCommit(maxInsertRows, insertLinger, w.set, free, s.insertSuppressions)
		w.history = newGroupCommit(maxInsertRows, insertLinger, w.set, free, s.insertHistory)
	})
	return w
}

// shardIndex is the index of partition's shard in writers (0 on one server).
func (s *Store) shardIndex(partition int) int {
	if s.cluster == nil {
		return 0
	}
	return partition % len(s.cluster.shards)
}

// WriteEvents inserts rows as one block into one partition. Rows of calls
// made at the same time (other Kafka partitions of the same shard) may
// share the block (groupCommit). Before them, it stores the stats marks of
// the (account, day)s they touch (rollups.go) and their messages' windows
// (message_index, activity.go), so every stored event has both; those are
// merged too (one insert into each table per merged block, not one per
// Kafka partition). Rows are one partition's, and a partition's calls come
// one after another in offset order (pipeline.Sink).
func (s *Store) WriteEvents(ctx context.Context, rows []pipeline.Row) error {
	if len(rows) == 0 {
		return nil
	}
	w := s.writers()
	writer, ok := pipeline.WriterOf(ctx)
	if !ok {
		writer = pipeline.Writer{Topic: rows[0].Topic, Partition: rows[0].Partition}
		ctx = pipeline.WithWriter(ctx, writer.Topic, writer.Partition)
	}
	w.set.wrote(writer)
	return w.events[s.shardIndex(rows[0].Partition)].write(ctx, rows)
}

// insertEventsWithSides stores the marks and the message index of the rows
// of parts (concurrently, one insert each), then, when both hold, the rows
// as one events block.
func (s *Store) insertEventsWithSides(ctx context.Context, ev *eventBlock, parts [][]pipeline.Row) error {
	var marksErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		marksErr = s.writeStatsMarks(ctx, parts...)
	}()
	indexErr := s.writeMessageIndex(ctx, &ev.index, parts...)
	<-done
	if err := errors.Join(marksErr, indexErr); err != nil {
		return err
	}
	return s.insertEvents(ctx, ev, parts)
}

// WriteDeadLetters inserts rejected input as one block (merged with
// concurrent calls of the same shard, like WriteEvents).
func (s *Store) WriteDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error {
	if len(rows) == 0 {
		return nil
	}
	return s.writers().deadLetters[s.shardIndex(rows[0].Partition)].write(ctx, rows)
}

func (s *Store) insertDeadLetters(ctx context.Context, parts [][]schemas.DeadLetter) error {
	rows := flatten(parts)
	n := len(rows)
	var writeTopics []string
	var writeParts []int
	for i, r := range rows {
		if i == 0 || r.Partition != rows[i-1].Partition || r.Topic != rows[i-1].Topic {
			writeTopics, writeParts = append(writeTopics, r.Topic), append(writeParts, r.Partition)
		}
	}
	ctx = withWriteID(ctx, "dead_letters", writeTopics, writeParts)
	date, at := s.ingestTime()
	dates, ats := make([]time.Time, n), make([]time.Time, n)
	topics, codes, details, raws, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	partitions, offsets, indexes := make([]uint32, n), make([]uint64, n), make([]int32, n)
	for i, r := range rows {
		dates[i], ats[i] = date, at
		topics[i], partitions[i], offsets[i], indexes[i] = r.Topic, uint32(r.Partition), uint64(r.Offset), int32(r.Index)
		codes[i], details[i], raws[i], keys[i] = string(r.Code), r.Detail, string(r.Raw), string(r.Key)
	}
	fill := func(b driver.Batch) error {
		return appendColumns(b, dates, ats, topics, partitions, offsets, indexes, codes, details, raws, keys)
	}
	if s.cluster != nil {
		return s.clusterInsert(ctx, qInsertDeadLetters, "dead_letters", rows[0].Partition, fill)
	}
	return s.insert(ctx, qInsertDeadLetters, fill)
}

// flatten joins parts into one slice (parts itself when there is one).
func flatten[T any](parts [][]T) []T {
	if len(parts) == 1 {
		return parts[0]
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]T, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// WriteSuppressions inserts list changes as one block (merged with
// concurrent calls: the rows are versioned, so any order converges).
func (s *Store) WriteSuppressions(ctx context.Context, rows []suppression.Change) error {
	if len(rows) == 0 {
		return nil
	}
	return s.writers().suppressions.write(ctx, rows)
}

func (s *Store) insertSuppressions(ctx context.Context, parts [][]suppression.Change) error {
	rows := flatten(parts)
	n := len(rows)
	accounts, lists, norms, emails := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	reasons, statuses, classes, codes, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	groups, created, deleted, versions := make([]int64, n), make([]time.Time, n), make([]uint8, n), make([]uint64, n)
	for i, r := range rows {
		accounts[i], lists[i], groups[i], norms[i], emails[i] = r.AccountID, r.List, r.GroupID, r.EmailNorm, r.Email
		created[i], reasons[i], statuses[i], classes[i], codes[i] = r.At, r.Reason, r.Status, r.Classification, r.ReasonCode
		deleted[i], versions[i], sources[i] = b2u(r.Deleted), r.Version(), r.Source
	}
	return s.insert(ctx, qInsertSuppressions, func(b driver.Batch) error {
		return appendColumns(b, accounts, lists, groups, norms, emails, created, reasons, statuses, classes, codes, deleted, versions, sources)
	})
}
