//go:build fault

package fault

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// dropSink is the reference run's pipeline.Sink: it keeps the derived drops.
type dropSink struct{ drops map[string]string }

func (s *dropSink) HighWater(context.Context, string, int) (pipeline.Marks, error) {
	return pipeline.Marks{Events: -1, DeadLetters: -1}, nil
}

func (s *dropSink) WriteEvents(_ context.Context, rows []pipeline.Row) error {
	for _, r := range rows {
		if r.Derived {
			s.drops[r.SGEventID] = r.Reason
		}
	}
	return nil
}

func (s *dropSink) WriteDeadLetters(context.Context, []schemas.DeadLetter) error   { return nil }
func (s *dropSink) WriteSuppressions(context.Context, []suppression.Change) error  { return nil }
func (s *dropSink) PublishDeadLetters(context.Context, []schemas.DeadLetter) error { return nil }

// expectedDrops is what the derived drops of a topic must be: the sink's
// handler run here over every message of the topic, one message per batch,
// partition after partition, with an index of its own changes only (the
// streams of these tests make no API changes and escalate no soft
// bounces). sg_event_id -> reason.
func expectedDrops(t *testing.T, brokers, topic string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn := consumer.Conn{Brokers: strings.Split(brokers, ",")}
	dialer, err := conn.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialer.DialContext(ctx, "tcp", conn.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := c.ReadPartitions(topic)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	sink := &dropSink{drops: map[string]string{}}
	h, err := pipeline.NewHandler(pipeline.Config{Sink: sink, Publisher: sink, Classifier: enrich.MustNew(), Suppressions: suppression.New()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		lc, err := dialer.DialLeader(ctx, "tcp", conn.Brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		_, end, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Topic: topic, Partition: p.ID, Dialer: dialer, MaxBytes: 4 << 20})
		for next := int64(0); next < end; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d at %d: %v", topic, p.ID, next, err)
			}
			next = m.Offset + 1
			msg := consumer.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
			if err := h.Handle(ctx, topic, p.ID, []consumer.Message{msg}); err != nil {
				r.Close()
				t.Fatal(err)
			}
		}
		r.Close()
	}
	return sink.drops
}

// storedDrops are the derived drops in a run's events table:
// sg_event_id -> reason.
func (r *run) storedDrops(t *testing.T) map[string]string {
	t.Helper()
	c := r.conn()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := c.Query(ctx, "SELECT sg_event_id, reason FROM "+r.db+".events WHERE derived = 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, reason string
		if err := rows.Scan(&id, &reason); err != nil {
			t.Fatal(err)
		}
		out[id] = reason
	}
	return out
}

// checkDrops asserts that the derived drops stored are exactly those of
// the reference run: the same events, the same reasons.
func (r *run) checkDrops(t *testing.T) {
	t.Helper()
	want := expectedDrops(t, r.inst.brokers, r.topic)
	got := r.storedDrops(t)
	if len(want) == 0 {
		t.Fatal("the reference run derived no drops: the stream should give some")
	}
	var wrong []string
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if got[id] != want[id] {
			wrong = append(wrong, id+": stored "+q(got[id])+", want "+q(want[id]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[id]; !ok {
			wrong = append(wrong, id+": stored "+q(got[id])+", want none")
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d derived drops stored, %d expected; %d differ, e.g. %v; logs in %s", len(got), len(want), len(wrong), wrong[:min(5, len(wrong))], r.logs)
		return
	}
	t.Logf("derived drops: %d, exactly those of the reference run", len(got))
}

func q(s string) string {
	if s == "" {
		return "none"
	}
	return `"` + s + `"`
}
