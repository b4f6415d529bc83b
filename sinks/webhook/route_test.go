package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// indexSlices is a pipeline.SliceHolder over one index (every slice is
// always held), partitioned into 4 like the change log.
type indexSlices struct{ *suppression.Index }

func (indexSlices) PartitionOf(account, email string) int {
	return consumer.PartitionOf(account, email, 4)
}
func (indexSlices) Partitions() int { return 4 }
func (indexSlices) Hold(context.Context, any, []int) error {
	return nil
}
func (indexSlices) Release(any) {}

// copyRecorder is the sink group's CopyWriter and RoutedMarker here: it
// keeps the copies as messages of the routed topic.
type copyRecorder struct {
	dropRecorder
	topic  string
	copies map[int][]consumer.Message
}

func (c *copyRecorder) WriteCopies(_ context.Context, cs []consumer.Copy) error {
	for _, cp := range cs {
		c.copies[cp.Partition] = append(c.copies[cp.Partition], consumer.Message{Topic: c.topic, Partition: cp.Partition,
			Offset: int64(len(c.copies[cp.Partition])), Key: cp.Source.Key, Value: cp.Source.Value, Time: cp.Source.Time, Headers: cp.Headers()})
	}
	return nil
}

func (c *copyRecorder) RoutedMarks(context.Context, string, int) (map[int]int64, error) {
	return nil, nil
}

// With re-routing, the webhook group delivers every event once, where the
// producer put it, so delivery never waits for the sink group's copies
// (which wait for ClickHouse: TestWebhookGiveUpDuringClickHouseOutage);
// a routed event's derived drop comes from its copy, where its
// recipient's slice is held, the same as the sink's.
func TestWebhooksDeliverRoutedEventsWhereProduced(t *testing.T) {
	g := eventgen.New(21)
	g.Recipients = 40
	g.Accounts = []string{"acct"}
	var msgs []consumer.Message
	for i := range 600 {
		msgs = append(msgs, consumer.Message{Topic: "t", Partition: 1, Offset: int64(i), Value: g.Message(nil, 1+i%3),
			Time: time.Unix(1764201600+int64(i), 0)})
	}
	cls := enrich.MustNew()
	index := indexSlices{suppression.New()}
	router, err := pipeline.NewRouter("t", index)
	if err != nil {
		t.Fatal(err)
	}
	// The sink group: routes, and derives the drops the webhooks must match.
	rec := &copyRecorder{dropRecorder: dropRecorder{drops: map[string]string{}}, topic: router.RoutedTopic(), copies: map[int][]consumer.Message{}}
	h, err := pipeline.NewHandler(pipeline.Config{Sink: rec, Publisher: rec, Classifier: cls, Suppressions: index,
		MaxFutureSkew: -1, Route: router, Copies: rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), "t", 1, msgs); err != nil {
		t.Fatal(err)
	}
	for p, cs := range rec.copies {
		if err := h.Handle(context.Background(), router.RoutedTopic(), p, cs); err != nil {
			t.Fatal(err)
		}
	}
	if len(rec.copies) == 0 || len(rec.copies[1]) != 0 {
		t.Fatalf("copies to routed partitions %v: want some, none to the source partition", slices.Collect(func(yield func(int) bool) {
			for p := range rec.copies {
				yield(p)
			}
		}))
	}
	// Every event of the stream, and which of them were routed.
	var dec schemas.Decoder
	all := map[string]bool{}
	routed := 0
	routedDrop := map[string]bool{} // drop ids a routed event would have
	for i := range msgs {
		evs, _ := dec.Decode(msgs[i].Value, schemas.Coordinates{Topic: "t", Partition: 1, Offset: msgs[i].Offset}, nil)
		for k := range evs {
			all[evs[k].SGEventID] = true
			if router.Destination(&evs[k], 1) >= 0 {
				routed++
				routedDrop[pipeline.DerivedEventID("dropped", evs[k].SGEventID)] = true
			}
		}
	}

	rcv := &bodies{by: map[string][][]byte{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	events := map[string]bool{}
	for _, e := range []string{"processed", "dropped", "delivered", "deferred", "bounce", "open", "click", "spamreport",
		"unsubscribe", "group_unsubscribe", "group_resubscribe"} {
		events[e] = true
	}
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "e", AccountID: "acct", URL: srv.URL + "/hook", Enabled: true, Events: events}}}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: &http.Client{}, Parker: &memParker{}, Classifier: cls,
		Drops: suppression.New(), Route: router, MaxBatchWait: 5 * time.Millisecond, RefreshEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	wh := d.EventHandler(0)
	stage := func(topic string, p int, batch []consumer.Message) {
		done, err := wh.Stage(ctx, topic, p, batch)
		if err != nil {
			t.Fatal(err)
		}
		if err := done(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// delivered counts each event delivered, by id; drops holds the
	// derived drops' reasons.
	delivered := func() (got map[string]int, drops map[string]string) {
		got, drops = map[string]int{}, map[string]string{}
		for _, e := range rcv.list(t, "/hook") {
			if _, ok := rec.drops[e.ID]; ok {
				drops[e.ID] = e.Reason
				continue
			}
			got[e.ID]++
		}
		return got, drops
	}
	checkEvents := func(when string) {
		t.Helper()
		got, _ := delivered()
		for id := range all {
			if got[id] != 1 {
				t.Errorf("%s: event %s delivered %d times, want once", when, id, got[id])
			}
		}
		for id, n := range got {
			if !all[id] {
				t.Errorf("%s: delivered %d times an event not in the stream: %s", when, n, id)
			}
		}
	}

	// The source partition alone (the sink group's copies not there yet,
	// as while ClickHouse is down): every event, routed ones too, and no
	// drop of a routed event.
	stage("t", 1, msgs)
	checkEvents("source partition only")
	_, early := delivered()
	for id := range early {
		if routedDrop[id] {
			t.Errorf("derived drop %s of a routed event delivered from the source partition: it belongs to its copy", id)
		}
	}
	// Then the copies: their drops (as of the source positions, though
	// the group reads them after the source), no event a second time.
	for p, cs := range rec.copies {
		stage(router.RoutedTopic(), p, cs)
	}
	checkEvents("after the copies")
	_, drops := delivered()
	if len(drops) != len(rec.drops) {
		t.Errorf("%d derived drops delivered, the sink derived %d", len(drops), len(rec.drops))
	}
	for id, reason := range rec.drops {
		if drops[id] != reason {
			t.Errorf("derived drop %s: delivered %q, the sink's %q", id, drops[id], reason)
		}
	}
	ofRouted := 0
	for id := range rec.drops {
		if routedDrop[id] {
			ofRouted++
		}
	}
	if routed == 0 || ofRouted == 0 || len(early) == 0 {
		t.Fatalf("%d events routed, %d drops of routed events, %d of others: the stream should give some of each", routed, ofRouted, len(early))
	}
	t.Logf("%d events, %d routed, %d derived drops (%d of routed events)", len(all), routed, len(rec.drops), ofRouted)
}
