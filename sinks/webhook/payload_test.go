package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// sendGridEvent is SendGrid's Event Webhook event as its documentation
// shows bounce, blocked and dropped events (field names and JSON types);
// Bouncer is the opt-in namespaced object.
type sendGridEvent struct {
	Email                string   `json:"email"`
	Timestamp            int64    `json:"timestamp"`
	SMTPID               string   `json:"smtp-id"`
	Event                string   `json:"event"`
	Category             []string `json:"category"`
	SGEventID            string   `json:"sg_event_id"`
	SGMessageID          string   `json:"sg_message_id"`
	Reason               string   `json:"reason"`
	Status               string   `json:"status"`
	Type                 string   `json:"type"`
	BounceClassification string   `json:"bounce_classification"`
	IP                   string   `json:"ip"`
	Response             string   `json:"response"` // delivered and deferred events
	TLS                  int      `json:"tls"`
	AccountID            string   `json:"account_id"` // bouncer's tenancy key, sent by the producer
	Bouncer              *struct {
		BounceType string `json:"bounce_type"`
		ReasonCode string `json:"reason_code"`
		Rule       string `json:"rule"`
	} `json:"bouncer"`
}

// bodies collects request bodies per path.
type bodies struct {
	mu sync.Mutex
	by map[string][][]byte
}

func (b *bodies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.by[r.URL.Path] = append(b.by[r.URL.Path], body)
	b.mu.Unlock()
}

// hookEvent is what the drop tests read of a delivered event.
type hookEvent struct {
	ID     string `json:"sg_event_id"`
	Event  string `json:"event"`
	Reason string `json:"reason"`
}

// list decodes every event delivered to path, in order of arrival,
// repeats included.
func (b *bodies) list(t *testing.T, path string) []hookEvent {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []hookEvent
	for _, body := range b.by[path] {
		var evs []hookEvent
		if err := json.Unmarshal(body, &evs); err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	return out
}

// events decodes every delivered event of path with SendGrid's event
// shape, strictly (a field SendGrid does not document fails), by
// sg_event_id, with the raw objects.
func (b *bodies) events(t *testing.T, path string) (map[string]sendGridEvent, map[string]map[string]json.RawMessage) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	out, raw := map[string]sendGridEvent{}, map[string]map[string]json.RawMessage{}
	for _, body := range b.by[path] {
		var elems []json.RawMessage
		if err := json.Unmarshal(body, &elems); err != nil {
			t.Fatalf("%s: not a JSON array: %v", path, err)
		}
		for _, e := range elems {
			var ev sendGridEvent
			dec := json.NewDecoder(bytes.NewReader(e))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Errorf("%s: %s does not decode as SendGrid's event: %v", path, e, err)
				continue
			}
			var m map[string]json.RawMessage
			json.Unmarshal(e, &m)
			out[ev.SGEventID], raw[ev.SGEventID] = ev, m
		}
	}
	return out, raw
}

type suppressedAll struct{}

func (suppressedAll) Apply(suppression.Change) {}

func (suppressedAll) DropReasonAt(account, email string, group int64, at int64, _ suppression.Position) string {
	if strings.HasPrefix(email, "suppressed") {
		return "Bounced Address"
	}
	return ""
}

// TestPayloadsAsSendGridSendsThem: bounce and blocked events the producer
// sent without SendGrid's classification fields are delivered with them
// (bounce_classification, type, status), derived drops with SendGrid's
// status, a field the producer set is never changed, and bouncer's own
// fields come only to the subscription that opted in, under "bouncer".
func TestPayloadsAsSendGridSendsThem(t *testing.T) {
	rcv := &bodies{by: map[string][][]byte{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cls, err := enrich.New()
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]bool{"bounce": true, "dropped": true, "delivered": true}
	reg := &memRegistry{eps: []subscription.Webhook{
		{ID: "plain", AccountID: "acct", URL: srv.URL + "/plain", Enabled: true, Events: events},
		{ID: "extras", AccountID: "acct", URL: srv.URL + "/extras", Enabled: true, Events: events, BouncerFields: true},
	}}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: &http.Client{}, Parker: &memParker{}, Classifier: cls,
		Drops: suppressedAll{}, MaxBatchWait: 20 * time.Millisecond, RefreshEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	msgs := []string{
		// A hard bounce without type, status or classification.
		`{"email":"gone@gmail.com","timestamp":1764201600,"event":"bounce","sg_event_id":"b1","sg_message_id":"m1","smtp-id":"<m1@x>","account_id":"acct",` +
			`"reason":"550 5.1.1 The email account that you tried to reach does not exist.","category":["welcome"]}`,
		// A block without a type.
		`{"email":"a@example.com","timestamp":1764201600,"event":"bounce","sg_event_id":"b2","account_id":"acct",` +
			`"reason":"550 5.7.1 Service unavailable; client host blocked using Spamhaus"}`,
		// The producer set every field, one of them empty and one to a
		// class bouncer would not choose: nothing changes.
		`{"email":"b@gmail.com","timestamp":1764201600,"event":"bounce","sg_event_id":"b3","account_id":"acct","type":"bounce","status":"",` +
			`"bounce_classification":"Technical Failure","reason":"550 5.1.1 The email account that you tried to reach does not exist."}`,
		// A processed event to a suppressed address: a derived drop.
		`{"email":"suppressed@example.com","timestamp":1764201600,"event":"processed","sg_event_id":"p1","sg_message_id":"m4","account_id":"acct"}`,
		// Not a bounce: sent as produced.
		`{"email":"c@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":"d1","account_id":"acct","response":"250 OK"}`,
	}
	var cms []consumer.Message
	for i, m := range msgs {
		cms = append(cms, consumer.Message{Topic: "t", Partition: 0, Offset: int64(i), Value: []byte(m)})
	}
	done, err := d.EventHandler(0).Stage(ctx, "t", 0, cms)
	if err != nil {
		t.Fatal(err)
	}
	if err := done(ctx); err != nil {
		t.Fatal(err)
	}
	plain, plainRaw := rcv.events(t, "/plain")
	extras, _ := rcv.events(t, "/extras")
	if len(plain) != 5 || len(extras) != 5 {
		t.Fatalf("delivered %d and %d events, want 5 each (4 + a derived drop)", len(plain), len(extras))
	}
	b1 := plain["b1"]
	if b1.BounceClassification != "Invalid Address" || b1.Type != "bounce" || b1.Status != "5.1.1" || b1.SGMessageID != "m1" ||
		b1.SMTPID != "<m1@x>" || len(b1.Category) != 1 || b1.Bouncer != nil {
		t.Errorf("hard bounce: %+v", b1)
	}
	if b2 := plain["b2"]; b2.BounceClassification != "Reputation" || b2.Type != "blocked" || b2.Status != "5.7.1" {
		t.Errorf("block: %+v", b2)
	}
	if b3 := plain["b3"]; b3.BounceClassification != "Technical Failure" || b3.Type != "bounce" || string(plainRaw["b3"]["status"]) != `""` {
		t.Errorf("producer's fields changed: %+v (status %s)", b3, plainRaw["b3"]["status"])
	}
	var drop sendGridEvent
	for id, e := range plain {
		if e.Event == "dropped" {
			drop = e
			if !strings.HasPrefix(id, "bnc1") {
				t.Errorf("derived drop id %q", id)
			}
		}
	}
	if drop.Reason != "Bounced Address" || drop.Status != "5.0.0" || drop.Email != "suppressed@example.com" || drop.SGMessageID != "m4" {
		t.Errorf("derived drop: %+v", drop)
	}
	if d1 := plain["d1"]; d1.Status != "" || d1.BounceClassification != "" || plainRaw["d1"]["bounce_classification"] != nil {
		t.Errorf("delivered event changed: %s", plainRaw["d1"])
	}
	// Opted in: the same events, and bouncer's fields under "bouncer".
	e1 := extras["b1"]
	if e1.BounceClassification != "Invalid Address" || e1.Bouncer == nil || e1.Bouncer.BounceType != "hard" ||
		e1.Bouncer.ReasonCode != "user_unknown" || e1.Bouncer.Rule == "" {
		t.Errorf("opted-in bounce: %+v %+v", e1, e1.Bouncer)
	}
	if e2 := extras["b2"]; e2.Bouncer == nil || e2.Bouncer.BounceType != "soft" {
		t.Errorf("opted-in block: %+v", e2)
	}
	if extras["d1"].Bouncer != nil {
		t.Errorf("bouncer fields on a delivered event")
	}
}
