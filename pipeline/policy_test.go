package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/suppression"
)

const day = int64(24 * 3600)

func ev(kind string, ts int64) HistoryEvent {
	switch kind {
	case "disabled":
		return HistoryEvent{Event: "bounce", ReasonCode: "mailbox_disabled", BounceType: "soft", Timestamp: ts}
	case "unknown4xx":
		return HistoryEvent{Event: "bounce", ReasonCode: "user_unknown", BounceType: "soft", Timestamp: ts}
	case "full":
		return HistoryEvent{Event: "bounce", ReasonCode: "mailbox_full", BounceType: "soft", Timestamp: ts}
	case "block":
		return HistoryEvent{Event: "bounce", ReasonCode: "ip_blocked", BounceType: "soft", Timestamp: ts}
	case "deferred":
		return HistoryEvent{Event: "deferred", ReasonCode: "mailbox_disabled", BounceType: "soft", Timestamp: ts}
	case "delivered":
		return HistoryEvent{Event: "delivered", Timestamp: ts}
	}
	panic(kind)
}

func TestSoftBouncePolicyDecide(t *testing.T) {
	p := SoftBouncePolicy{}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		events []HistoryEvent
		want   string
		at     int64
	}{
		{"two disabled a day apart", []HistoryEvent{ev("disabled", 0), ev("disabled", day)}, "mailbox_disabled", day},
		{"two disabled an hour apart", []HistoryEvent{ev("disabled", 0), ev("disabled", 3600)}, "", 0},
		{"third one reaches the span", []HistoryEvent{ev("disabled", 0), ev("disabled", 3600), ev("disabled", day+5)}, "mailbox_disabled", day + 5},
		{"a delivery in between resets", []HistoryEvent{ev("disabled", 0), ev("delivered", 100), ev("disabled", 2*day)}, "", 0},
		{"4xx user unknown counts", []HistoryEvent{ev("unknown4xx", 0), ev("unknown4xx", 2*day)}, "mailbox_disabled", 2 * day},
		{"deferrals do not count", []HistoryEvent{ev("deferred", 0), ev("deferred", 2*day)}, "", 0},
		{"blocks never suppress", []HistoryEvent{ev("block", 0), ev("block", 40*day)}, "", 0},
		{"full for 30 days", []HistoryEvent{ev("full", 0), ev("full", 10*day), ev("full", 30*day)}, "mailbox_full", 30 * day},
		{"full for 29 days", []HistoryEvent{ev("full", 0), ev("full", 29*day)}, "", 0},
		{"full, delivered, full again", []HistoryEvent{ev("full", 0), ev("delivered", day), ev("full", 31*day)}, "", 0},
		{"one full bounce", []HistoryEvent{ev("full", 0)}, "", 0},
	}
	for _, tt := range tests {
		at, why, ok := p.decide(tt.events)
		if why != tt.want || ok != (tt.want != "") || at != tt.at {
			t.Errorf("%s: got %q at %d (%v), want %q at %d", tt.name, why, at, ok, tt.want, tt.at)
		}
	}
	bad := SoftBouncePolicy{DisabledHits: -1}
	if bad.Validate() == nil {
		t.Error("negative hits: want an error")
	}
}

type fakeHistory struct {
	past    []HistoryEvent
	calls   int
	written []HistoryEvent
}

func (f *fakeHistory) WriteHistory(_ context.Context, events []HistoryEvent) error {
	f.written = append(f.written, events...)
	return nil
}

func (f *fakeHistory) RecipientHistory(_ context.Context, account string, emails []string, since time.Time) ([]HistoryEvent, error) {
	f.calls++
	var out []HistoryEvent
	for _, e := range f.past {
		for _, m := range emails {
			if e.EmailNorm == m && e.Timestamp >= since.Unix() {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// A disabled-mailbox bounce today, after one yesterday in the table,
// escalates; one query per batch, none for a batch without such bounces.
func TestHandlerAppliesSoftBouncePolicy(t *testing.T) {
	sink := newFakeSink(1, 0)
	hist := &fakeHistory{past: []HistoryEvent{{EmailNorm: "kim@yahoo.com", Event: "bounce", ReasonCode: "mailbox_disabled", BounceType: "soft", Timestamp: 1764201600 - day}}}
	h, err := NewHandler(Config{Sink: sink, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}}, Classifier: enrich.MustNew(), History: hist})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []consumer.Message{
		{Topic: "t", Offset: 0, Value: []byte(`{"event":"open","email":"kim@yahoo.com","timestamp":1764201600}`)},
	}
	if err := h.Handle(context.Background(), "t", 0, msgs); err != nil || hist.calls != 0 || sink.sups != 0 {
		t.Fatalf("batch without soft bounces: err %v, %d history queries, %d changes", err, hist.calls, sink.sups)
	}
	msgs = []consumer.Message{
		{Topic: "t", Offset: 1, Value: []byte(`{"event":"bounce","email":"Kim@Yahoo.com","timestamp":1764201600,"reason":"554 30 Sorry, your message to kim@yahoo.com cannot be delivered. This mailbox is disabled (554.30)."}`)},
		{Topic: "t", Offset: 2, Value: []byte(`{"event":"bounce","email":"lee@yahoo.com","timestamp":1764201600,"reason":"554 30 Sorry, your message to lee@yahoo.com cannot be delivered. This mailbox is disabled (554.30)."}`)},
	}
	var changes fakeChanges
	h.cfg.Changes = &changes
	if err := h.Handle(context.Background(), "t", 0, msgs); err != nil {
		t.Fatal(err)
	}
	if hist.calls != 1 {
		t.Errorf("%d history queries, want 1 per batch", hist.calls)
	}
	if len(hist.written) != 2 || hist.written[0].ReasonCode != "mailbox_disabled" {
		t.Errorf("history written: %+v, want the two disabled-mailbox bounces", hist.written)
	}
	if len(changes.got) != 1 || changes.got[0].EmailNorm != "kim@yahoo.com" || changes.got[0].List != suppression.ListBounces || changes.got[0].Source != "policy:mailbox_disabled" {
		t.Fatalf("escalations: %+v, want kim on bounces (lee has one bounce only)", changes.got)
	}
}
