// Package sinktest is the conformance suite of pipeline.Sink: the same
// tests run against the ClickHouse sink (sinks/clickhouse) and against the
// fake the pipeline's unit tests use, so the fake cannot drift from the
// contract the handler relies on (watermill's pubsub/tests idea).
//
// What the suite holds a Sink to (pipeline.Sink's comment, made precise):
//
//   - HighWater answers -1 for a table that holds nothing of the topic and
//     partition, else the highest offset written there, per table (events,
//     dead letters) and per topic and partition: writes to another topic
//     or partition, or to the other table, do not move it.
//   - A mark never goes down: a later write of lower offsets (a replay)
//     leaves it where it was.
//   - Writes of no rows succeed and change nothing; writes of list changes
//     succeed and move no mark.
package sinktest

import (
	"context"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Run runs the suite; newSink returns an empty Sink for each test (topic
// names are unique to the test, so a shared database may back them).
func Run(t *testing.T, newSink func(t *testing.T) pipeline.Sink) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s pipeline.Sink, topic string)
	}{
		{"EmptyMarks", emptyMarks},
		{"MarksPerPartitionAndTable", marksPerPartitionAndTable},
		{"MarksPerTopic", marksPerTopic},
		{"MarksNeverGoDown", marksNeverGoDown},
		{"EmptyWrites", emptyWrites},
		{"SuppressionsMoveNoMark", suppressionsMoveNoMark},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newSink(t), "sinktest-"+tc.name+"-"+time.Now().Format("150405.000000000"))
		})
	}
}

func row(topic string, partition int, offset int64, index int) pipeline.Row {
	return pipeline.Row{Event: schemas.Event{Topic: topic, Partition: partition, Offset: offset, Index: index,
		Event: "delivered", Email: "a@example.com", EmailNorm: "a@example.com", AccountID: "acme", Timestamp: 1764201600}}
}

func dead(topic string, partition int, offset int64) schemas.DeadLetter {
	return schemas.DeadLetter{Topic: topic, Partition: partition, Offset: offset, Index: -1, Code: "empty", Raw: []byte("x")}
}

func marks(t *testing.T, s pipeline.Sink, topic string, partition int) pipeline.Marks {
	t.Helper()
	m, err := s.HighWater(context.Background(), topic, partition)
	if err != nil {
		t.Fatalf("HighWater(%s, %d): %v", topic, partition, err)
	}
	return m
}

func want(t *testing.T, s pipeline.Sink, topic string, partition int, events, deadLetters int64) {
	t.Helper()
	if m := marks(t, s, topic, partition); m.Events != events || m.DeadLetters != deadLetters {
		t.Errorf("marks of %s/%d: events %d, dead letters %d; want %d, %d", topic, partition, m.Events, m.DeadLetters, events, deadLetters)
	}
}

func writeEvents(t *testing.T, s pipeline.Sink, rows ...pipeline.Row) {
	t.Helper()
	if err := s.WriteEvents(context.Background(), rows); err != nil {
		t.Fatalf("WriteEvents: %v", err)
	}
}

func writeDead(t *testing.T, s pipeline.Sink, rows ...schemas.DeadLetter) {
	t.Helper()
	if err := s.WriteDeadLetters(context.Background(), rows); err != nil {
		t.Fatalf("WriteDeadLetters: %v", err)
	}
}

func emptyMarks(t *testing.T, s pipeline.Sink, topic string) {
	want(t, s, topic, 0, -1, -1)
}

func marksPerPartitionAndTable(t *testing.T, s pipeline.Sink, topic string) {
	writeEvents(t, s, row(topic, 0, 3, 0), row(topic, 0, 7, 0), row(topic, 0, 7, 1))
	writeEvents(t, s, row(topic, 1, 2, 0))
	want(t, s, topic, 0, 7, -1)
	want(t, s, topic, 1, 2, -1)
	want(t, s, topic, 2, -1, -1)
	writeDead(t, s, dead(topic, 0, 5))
	want(t, s, topic, 0, 7, 5)
	want(t, s, topic, 1, 2, -1)
}

func marksPerTopic(t *testing.T, s pipeline.Sink, topic string) {
	writeEvents(t, s, row(topic, 0, 9, 0))
	writeDead(t, s, dead(topic, 0, 4))
	want(t, s, topic+"-other", 0, -1, -1)
	writeEvents(t, s, row(topic+"-other", 0, 1, 0))
	want(t, s, topic, 0, 9, 4)
	want(t, s, topic+"-other", 0, 1, -1)
}

func marksNeverGoDown(t *testing.T, s pipeline.Sink, topic string) {
	writeEvents(t, s, row(topic, 0, 10, 0))
	writeDead(t, s, dead(topic, 0, 8))
	writeEvents(t, s, row(topic, 0, 4, 0))
	writeDead(t, s, dead(topic, 0, 2))
	want(t, s, topic, 0, 10, 8)
}

func emptyWrites(t *testing.T, s pipeline.Sink, topic string) {
	ctx := context.Background()
	if err := s.WriteEvents(ctx, nil); err != nil {
		t.Errorf("WriteEvents(nil): %v", err)
	}
	if err := s.WriteDeadLetters(ctx, nil); err != nil {
		t.Errorf("WriteDeadLetters(nil): %v", err)
	}
	if err := s.WriteSuppressions(ctx, nil); err != nil {
		t.Errorf("WriteSuppressions(nil): %v", err)
	}
	want(t, s, topic, 0, -1, -1)
}

func suppressionsMoveNoMark(t *testing.T, s pipeline.Sink, topic string) {
	at := time.Unix(1764201600, 0).UTC()
	err := s.WriteSuppressions(context.Background(), []suppression.Change{
		{AccountID: "acme", List: "bounces", EmailNorm: "a@example.com", Email: "a@example.com", At: at, Reason: "550 5.1.1", Source: suppression.SourceAPI},
		{AccountID: "acme", List: "bounces", EmailNorm: "a@example.com", Email: "a@example.com", At: at.Add(time.Second), Deleted: true, Source: suppression.SourceAPI},
	})
	if err != nil {
		t.Fatalf("WriteSuppressions: %v", err)
	}
	want(t, s, topic, 0, -1, -1)
}
