package pipeline

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// routedSink is a fakeSink (writes fail at random, some after storing)
// that keeps every row by its source identity, the derived drops, and the
// routed partitions' marks as ClickHouse would report them.
type routedSink struct {
	*fakeSink
	ids    map[string]int    // source identity -> rows
	routed int               // rows stored from routed copies
	drops  map[string]string // sg_event_id -> reason
	marks  map[tp]map[int]int64
}

func newRoutedSink(seed uint64, failP float64) *routedSink {
	return &routedSink{fakeSink: newFakeSink(seed, failP), ids: map[string]int{}, drops: map[string]string{}, marks: map[tp]map[int]int64{}}
}

func sourceIdentity(r *Row) string {
	if r.SourceTopic != "" {
		return fmt.Sprintf("%s/%d/%d/%d", r.SourceTopic, r.SourcePartition, r.SourceOffset, r.Index)
	}
	return fmt.Sprintf("%s/%d/%d/%d", r.Topic, r.Partition, r.Offset, r.Index)
}

func (s *routedSink) WriteEvents(_ context.Context, rows []Row) error {
	store, err := s.outcome()
	s.mu.Lock()
	defer s.mu.Unlock()
	if store {
		for i := range rows {
			r := &rows[i]
			s.ids[sourceIdentity(r)]++
			if r.Derived {
				s.drops[r.SGEventID] = r.Reason
			}
			k := tp{r.Topic, r.Partition}
			if hi, ok := s.evHi[k]; !ok || r.Offset > hi {
				s.evHi[k] = r.Offset
			}
			if r.SourceTopic != "" {
				s.routed++
				if s.marks[k] == nil {
					s.marks[k] = map[int]int64{}
				}
				s.marks[k][r.SourcePartition] = max(s.marks[k][r.SourcePartition], r.SourceOffset)
			}
		}
	}
	return err
}

func (s *routedSink) RoutedMarks(_ context.Context, topic string, p int) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.marks[tp{topic, p}]), nil
}

// fakeRouted is the routed topic: WriteCopies appends each partition's
// copies in order and, at random, stops a partition part way (the rest
// not sent, an error) or loses the answer of a copy it appended (an
// error), as consumer.CopyWriter may.
type fakeRouted struct {
	rng   *rand.Rand
	failP float64
	topic string
	parts map[int][]consumer.Message
	sent  int
}

func (f *fakeRouted) WriteCopies(_ context.Context, copies []consumer.Copy) error {
	var err error
	stopped := map[int]bool{}
	for _, c := range copies {
		if stopped[c.Partition] {
			continue
		}
		r := f.rng.Float64()
		if r < f.failP/2 {
			stopped[c.Partition], err = true, errInjected
			continue
		}
		src := c.Source
		f.parts[c.Partition] = append(f.parts[c.Partition], consumer.Message{
			Topic: f.topic, Partition: c.Partition, Offset: int64(len(f.parts[c.Partition])),
			Key: src.Key, Value: src.Value, Time: src.Time, Headers: c.Headers(),
		})
		f.sent++
		if r < f.failP {
			stopped[c.Partition], err = true, errInjected
		}
	}
	return err
}

// sourceStream is n messages of generated events in 4 partitions the way
// kafka-go's default hash (FNV-1a of the recipient key) puts them: most
// recipients are in another partition than consumer.PartitionOf says, each
// recipient's events in one partition. With arrays, messages hold 1-3
// events of different recipients (then a recipient's events are spread).
func sourceStream(seed uint64, n int, arrays bool) map[int][]consumer.Message {
	g := eventgen.New(seed)
	g.Recipients = 30
	g.Accounts = []string{"acme", "globex"}
	rng := rand.New(rand.NewPCG(seed, 2))
	hash := &kafka.Hash{}
	out := map[int][]consumer.Message{}
	for i := range n {
		size := 1
		if arrays {
			size = 1 + rng.IntN(3)
		}
		v := g.Message(nil, size)
		if i%97 == 5 {
			v = eventgen.Bad(i)
		}
		p := hash.Balance(kafka.Message{Key: eventgen.RecipientKey(v)}, 0, 1, 2, 3)
		out[p] = append(out[p], consumer.Message{Topic: "t", Partition: p, Offset: int64(len(out[p])), Value: v, Key: eventgen.RecipientKey(v),
			Time: time.Unix(1764201600+int64(i), 0)})
	}
	return out
}

// referenceDrops runs the sink handler without routing over the stream,
// one message per batch, partition after partition, with a full index.
func referenceDrops(t *testing.T, stream map[int][]consumer.Message) (map[string]string, int) {
	t.Helper()
	sink := newRoutedSink(1, 0)
	h, err := NewHandler(Config{Sink: sink, Publisher: &fakePublisher{sink: sink.fakeSink, seen: map[string]bool{}},
		Classifier: enrich.MustNew(), Suppressions: suppression.New(), MaxFutureSkew: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range slices.Sorted(maps.Keys(stream)) {
		for i := range stream[p] {
			if err := h.Handle(context.Background(), "t", p, stream[p][i:i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	good := 0
	for id, n := range sink.ids {
		if n != 1 {
			t.Fatalf("reference run stored %s %d times", id, n)
		}
		good++
	}
	return sink.drops, good - len(sink.drops)
}

// driveRouted drives a sink handler with routing the way the consumer
// group does, over the source partitions and the routed partitions they
// fill: random batch sizes, random write and copy failures (retried),
// random commits skipped, and random crashes that lose all in-memory state
// (the handler, the slices held) and resume every partition from its
// committed offset and the sink's marks. It returns the sink and the
// routed topic.
func driveRouted(t *testing.T, seed uint64, stream map[int][]consumer.Message, failP float64) (*routedSink, *fakeRouted) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	sink := newRoutedSink(seed, failP)
	routed := &fakeRouted{rng: rand.New(rand.NewPCG(seed, 4)), failP: failP, topic: consumer.RoutedTopic("t"), parts: map[int][]consumer.Message{}}
	ix := suppression.New()
	classifier := enrich.MustNew()
	var fs *fakeSlices
	var h *Handler
	type part struct {
		topic string
		p     int
	}
	committed := map[part]int64{}
	pos := map[part]int64{}
	start := func() {
		fs = &fakeSlices{t: t, n: 4, ix: ix, owners: map[any]map[int]bool{}}
		router, err := NewRouter("t", fs)
		if err != nil {
			t.Fatal(err)
		}
		h, err = NewHandler(Config{Sink: sink, Publisher: &fakePublisher{sink: sink.fakeSink, seen: map[string]bool{}},
			Classifier: classifier, Suppressions: fs, Changes: &fakeChanges{}, MaxFutureSkew: -1,
			Route: router, Copies: routed})
		if err != nil {
			t.Fatal(err)
		}
		clear(pos)
	}
	log := func(k part) []consumer.Message {
		if k.topic == "t" {
			return stream[k.p]
		}
		return routed.parts[k.p]
	}
	start()
	for round := 0; ; round++ {
		if round > 200000 {
			t.Fatal("the stream never drained")
		}
		var open []part
		for p := range 4 {
			for _, k := range []part{{"t", p}, {routed.topic, p}} {
				if committed[k] < int64(len(log(k))) {
					open = append(open, k)
				}
			}
		}
		if len(open) == 0 {
			break
		}
		k := open[rng.IntN(len(open))]
		if _, ok := pos[k]; !ok {
			next, err := h.Assigned(context.Background(), k.topic, k.p)
			if err != nil {
				continue
			}
			pos[k] = max(committed[k], next)
		}
		msgs := log(k)
		if pos[k] >= int64(len(msgs)) {
			committed[k] = pos[k] // a tail the handler had stored
			continue
		}
		end := min(pos[k]+1+int64(rng.IntN(40)), int64(len(msgs)))
		err := h.Handle(context.Background(), k.topic, k.p, msgs[pos[k]:end])
		for owner, held := range fs.owners {
			o := owner.(SliceOwner)
			for p := range held {
				if p != o.Partition {
					t.Fatalf("the owner of %s/%d holds slice %d: a foreign slice", o.Topic, o.Partition, p)
				}
			}
		}
		switch {
		case rng.Float64() < failP/3:
			start() // kill -9: the next owner reads the marks
		case err != nil:
			// retried by the group: the same batch again
		default:
			pos[k] = end
			if rng.Float64() < 0.7 {
				committed[k] = end
			}
		}
	}
	return sink, routed
}

// Routed events land exactly once, from their copies, whatever fails and
// whenever the worker dies, and get the same derived drops as the same
// stream handled without routing; no handler ever holds another
// partition's slice.
func TestRoutedEventsStoredOnce(t *testing.T) {
	stream := sourceStream(13, 1200, false)
	want, good := referenceDrops(t, stream)
	if len(want) < 10 {
		t.Fatalf("the reference run derived %d drops; the stream should give more", len(want))
	}
	for seed := uint64(1); seed <= 6; seed++ {
		sink, routed := driveRouted(t, seed, stream, 0.3)
		checkOnce(t, seed, sink, good+len(want))
		if routed.sent == 0 {
			t.Fatalf("seed %d: nothing was routed", seed)
		}
		if !maps.Equal(sink.drops, want) {
			t.Errorf("seed %d: %d derived drops, want the reference's %d", seed, len(sink.drops), len(want))
		}
		if seed == 1 {
			t.Logf("seed 1: %d copies sent for 1200 messages, %d rows stored, %d drops", routed.sent, len(sink.ids), len(sink.drops))
		}
	}
}

// Messages of several events (SendGrid's arrays) whose events go to
// different partitions: each event lands once, the ones that stay from the
// source, the others from their copies.
func TestRoutedArraysStoredOnce(t *testing.T) {
	stream := sourceStream(14, 800, true)
	_, good := referenceDrops(t, stream)
	for seed := uint64(1); seed <= 4; seed++ {
		sink, _ := driveRouted(t, seed, stream, 0.3)
		checkOnce(t, seed, sink, -1)
		routedRows, stayed := sink.routed, len(sink.ids)-sink.routed
		if got := len(sink.ids) - len(sink.drops); got != good {
			t.Errorf("seed %d: %d events stored, want %d", seed, got, good)
		}
		if routedRows == 0 || stayed == 0 {
			t.Errorf("seed %d: %d rows routed, %d stayed: want both", seed, routedRows, stayed)
		}
	}
}

func checkOnce(t *testing.T, seed uint64, sink *routedSink, want int) {
	t.Helper()
	for id, n := range sink.ids {
		if n != 1 {
			t.Errorf("seed %d: %s stored %d times", seed, id, n)
		}
	}
	if want >= 0 && len(sink.ids) != want {
		t.Errorf("seed %d: %d rows stored, want %d", seed, len(sink.ids), want)
	}
}

// The decode of a copy yields the source message's events with the
// source's coordinates and ids (an event without sg_event_id gets the
// same derived id), and only those routed to the copy's partition.
func TestDecodeCopy(t *testing.T) {
	fs := &fakeSlices{t: t, n: 4, ix: suppression.New(), owners: map[any]map[int]bool{}}
	r, err := NewRouter("t", fs)
	if err != nil {
		t.Fatal(err)
	}
	var elems []string
	for i := range 12 {
		elems = append(elems, fmt.Sprintf(`{"event":"processed","email":"r%d@example.com","timestamp":1764201600}`, i))
	}
	elems = append(elems, `{"event":"delivered","email":"r0@example.com","timestamp":1764201600}`)
	src := consumer.Message{Topic: "t", Partition: 2, Offset: 41, Value: []byte("[" + strings.Join(elems, ",") + "]")}
	var dec schemas.Decoder
	all, _ := dec.Decode(src.Value, schemas.Coordinates{Topic: "t", Partition: 2, Offset: 41}, nil)
	byDest := map[int][]schemas.Event{}
	for _, ev := range all {
		if p := r.Destination(&ev, 2); p >= 0 {
			byDest[p] = append(byDest[p], ev)
		}
	}
	if len(byDest) == 0 || len(byDest[2]) != 0 {
		t.Fatalf("destinations %v: want some, never the source partition", slices.Collect(maps.Keys(byDest)))
	}
	for p, want := range byDest {
		c := consumer.Copy{Partition: p, Source: &src}
		copyMsg := consumer.Message{Topic: r.RoutedTopic(), Partition: p, Offset: 7, Value: src.Value, Headers: c.Headers()}
		got, from, ok := r.DecodeCopy(&dec, &copyMsg, p, nil)
		if !ok || from.Partition != 2 || from.Offset != 41 {
			t.Fatalf("copy to %d: source %+v ok %v", p, from, ok)
		}
		if len(got) != len(want) {
			t.Fatalf("copy to %d: %d events, want %d", p, len(got), len(want))
		}
		for i := range got {
			if got[i].SGEventID != want[i].SGEventID || got[i].Index != want[i].Index || got[i].Partition != 2 || got[i].Offset != 41 || got[i].Topic != "t" {
				t.Errorf("copy to %d: event %d is %s %s/%d/%d/%d, want %s at t/2/41/%d", p, i, got[i].SGEventID,
					got[i].Topic, got[i].Partition, got[i].Offset, got[i].Index, want[i].SGEventID, want[i].Index)
			}
		}
	}
	if _, _, ok := r.DecodeCopy(&dec, &consumer.Message{Topic: r.RoutedTopic(), Value: src.Value}, 1, nil); ok {
		t.Error("a message without the copy's headers decoded as a copy")
	}
}
