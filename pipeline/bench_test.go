package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/internal/geotest"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// discardSink stores nothing and reports nothing stored, so the benchmark
// measures the handler alone (the ClickHouse driver's share is in the
// end-to-end `bouncer bench`).
type discardSink struct{}

func (discardSink) HighWater(context.Context, string, int) (Marks, error) {
	return Marks{Events: -1, DeadLetters: -1}, nil
}
func (discardSink) WriteEvents(context.Context, []Row) error                       { return nil }
func (discardSink) WriteDeadLetters(context.Context, []schemas.DeadLetter) error   { return nil }
func (discardSink) WriteSuppressions(context.Context, []suppression.Change) error  { return nil }
func (discardSink) PublishDeadLetters(context.Context, []schemas.DeadLetter) error { return nil }
func (discardSink) PublishChanges(context.Context, []suppression.Change) error     { return nil }
func (discardSink) WriteHistory(context.Context, []HistoryEvent) error             { return nil }
func (discardSink) RecipientHistory(context.Context, string, []string, time.Time) ([]HistoryEvent, error) {
	return nil, nil
}

// BenchmarkHandle runs the sink group's handler with every feature on
// (classification, suppression lookups and derived drops, the change log,
// the soft-bounce policy and its history, dead letters) over batches of
// the bench's generated events, with a sink that discards: the worker's
// own CPU per event, without Kafka's and ClickHouse's clients.
//
// Sub-benchmark "agents" also classifies the opens' and clicks' user
// agents (enrich.Agents, cached) and places their ips (enrich.Geo, on a
// small test database): the ingest cost of the advanced stats.
//
//	go test -run '^$' -bench Handle -benchmem ./pipeline/
func BenchmarkHandle(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchmarkHandle(b, nil, nil) })
	agents, err := enrich.NewAgents(0)
	if err != nil {
		b.Fatal(err)
	}
	geo, err := enrich.OpenGeo(geotest.WriteDB(b, b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer geo.Close()
	b.Run("agents", func(b *testing.B) { benchmarkHandle(b, agents, geo) })
}

func benchmarkHandle(b *testing.B, agents *enrich.Agents, geo *enrich.Geo) {
	const batch = 5000
	gen := eventgen.New(42)
	msgs := make([]consumer.Message, batch)
	for i := range msgs {
		v, _ := gen.Next(nil)
		msgs[i] = consumer.Message{Topic: "events", Partition: 0, Offset: int64(i), Value: v, Time: time.Unix(1764201600+3600, 0)}
	}
	sink := discardSink{}
	index := suppression.New()
	h, err := NewHandler(Config{
		Sink: sink, Publisher: sink, Classifier: enrich.MustNew(), Suppressions: index, Changes: sink,
		History: sink, Now: func() time.Time { return time.Unix(1764201600+7200, 0) }, Agents: agents, Geo: geo,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Handle(ctx, "events", 0, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/event")
	b.ReportMetric(0, "ns/op")
}
