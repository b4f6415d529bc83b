package webhook_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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

// dropRecorder is the sink group's pipeline.Sink in this test: it keeps
// the derived drops (sg_event_id -> reason).
type dropRecorder struct{ drops map[string]string }

func (s *dropRecorder) HighWater(context.Context, string, int) (pipeline.Marks, error) {
	return pipeline.Marks{Events: -1, DeadLetters: -1}, nil
}

func (s *dropRecorder) WriteEvents(_ context.Context, rows []pipeline.Row) error {
	for _, r := range rows {
		if r.Derived {
			s.drops[r.SGEventID] = r.Reason
		}
	}
	return nil
}

func (s *dropRecorder) WriteDeadLetters(context.Context, []schemas.DeadLetter) error   { return nil }
func (s *dropRecorder) WriteSuppressions(context.Context, []suppression.Change) error  { return nil }
func (s *dropRecorder) PublishDeadLetters(context.Context, []schemas.DeadLetter) error { return nil }

// The webhook group derives the same drops as the sink group from the same
// stream, whatever its batches, whether it runs alone (ahead of the sink:
// it learns the list changes itself) or shares the index with a sink that
// already handled the whole stream (behind it).
func TestWebhookDropsSameAsSink(t *testing.T) {
	g := eventgen.New(5)
	g.Recipients = 60
	g.Accounts = []string{"acct"}
	var msgs []consumer.Message
	for i := range 2500 {
		v, _ := g.Next(nil)
		msgs = append(msgs, consumer.Message{Topic: "t", Partition: 0, Offset: int64(i), Value: v})
	}
	cls := enrich.MustNew()
	sinkDrops := func(index *suppression.Index, batch int) map[string]string {
		rec := &dropRecorder{drops: map[string]string{}}
		h, err := pipeline.NewHandler(pipeline.Config{Sink: rec, Publisher: rec, Classifier: cls, Suppressions: index, MaxFutureSkew: -1})
		if err != nil {
			t.Fatal(err)
		}
		for start := 0; start < len(msgs); start += batch {
			if err := h.Handle(context.Background(), "t", 0, msgs[start:min(start+batch, len(msgs))]); err != nil {
				t.Fatal(err)
			}
		}
		return rec.drops
	}
	want := sinkDrops(suppression.New(), 1)
	derivedPrefix := pipeline.DerivedEventID("dropped", "x")[:len("bnc1d_")]
	if len(want) < 20 {
		t.Fatalf("the sink derived %d drops; the stream should give more", len(want))
	}
	webhookDrops := func(index *suppression.Index, batch int) map[string]string {
		rcv := &bodies{by: map[string][][]byte{}}
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		reg := &memRegistry{eps: []subscription.Webhook{
			{ID: "e", AccountID: "acct", URL: srv.URL + "/hook", Enabled: true, Events: map[string]bool{"dropped": true}},
		}}
		d, err := webhook.New(webhook.Config{Registry: reg, Client: &http.Client{}, Parker: &memParker{}, Classifier: cls,
			Drops: index, MaxBatchWait: 5 * time.Millisecond, RefreshEvery: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go d.Run(ctx)
		for !d.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		h := d.EventHandler(0)
		for start := 0; start < len(msgs); start += batch {
			done, err := h.Stage(ctx, "t", 0, msgs[start:min(start+batch, len(msgs))])
			if err != nil {
				t.Fatal(err)
			}
			if err := done(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]string{}
		for _, e := range rcv.list(t, "/hook") {
			// Derived drops only, not the stream's own dropped events.
			if e.Event == "dropped" && strings.HasPrefix(e.ID, derivedPrefix) {
				got[e.ID] = e.Reason
			}
		}
		return got
	}
	for _, tc := range []struct {
		name  string
		index func() *suppression.Index
		batch int
	}{
		{"alone, batches of 1", suppression.New, 1},
		{"alone, batches of 97", suppression.New, 97},
		{"alone, one batch", suppression.New, len(msgs)},
		{"behind a sink that handled everything, batches of 53", func() *suppression.Index {
			index := suppression.New()
			sinkDrops(index, len(msgs))
			return index
		}, 53},
	} {
		got := webhookDrops(tc.index(), tc.batch)
		if !maps.Equal(got, want) {
			var differ []string
			for _, id := range slices.Sorted(maps.Keys(want)) {
				if got[id] != want[id] {
					differ = append(differ, id+": got "+got[id]+", want "+want[id])
				}
			}
			for _, id := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[id]; !ok {
					differ = append(differ, id+": got "+got[id]+", want none")
				}
			}
			t.Errorf("%s: %d drops delivered, the sink derived %d; %d differ, e.g. %v", tc.name, len(got), len(want), len(differ), differ[:min(5, len(differ))])
		}
	}
	t.Logf("%d derived drops, the same in every run", len(want))
}
