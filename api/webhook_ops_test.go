package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

// fakeOps is an in-memory WebhookOps for the handlers' logic; the real one
// (ClickHouse and Kafka) is tested in cmd/bouncer.
type fakeOps struct {
	mu      sync.Mutex
	failed  map[string][]subscription.FailedBatch // by endpoint id
	replays []string
	since   time.Time
}

func (f *fakeOps) WebhookState(_ context.Context, account, id string) (subscription.Webhook, subscription.DeliveryState, bool, error) {
	if account != "acme" || id != "ep1" {
		return subscription.Webhook{}, subscription.DeliveryState{}, false, nil
	}
	return subscription.Webhook{ID: id, URL: "https://hooks.example.com/x", DisabledAt: time.Unix(1764201600, 0),
			DisabledReason: "endpoint answered 410 Gone"},
		subscription.DeliveryState{Circuit: "open", LastFailure: time.Unix(1764201600, 0)}, true, nil
}

func (f *fakeOps) WebhookDeliveries(_ context.Context, account, id string, limit int) ([]subscription.Delivery, error) {
	return []subscription.Delivery{{At: time.Unix(1764201600, 0), WebhookID: "msg_a", Attempt: 2, Result: "gone", Status: 410,
		Duration: 12 * time.Millisecond, Response: "bye", Events: 3, Circuit: "open"}}[:min(limit, 1)], nil
}

func (f *fakeOps) FailedWebhookBatches(_ context.Context, account, id string, since time.Time, limit int) ([]subscription.FailedBatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []subscription.FailedBatch
	for _, b := range f.failed[id] {
		if !b.FailedAt.Before(since) && len(out) < limit {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeOps) ReplayWebhookBatches(_ context.Context, account, id, webhookID string, since time.Time) ([]subscription.Replay, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []subscription.Replay
	for _, b := range f.failed[id] {
		if (webhookID != "" && b.WebhookID == webhookID) || (webhookID == "" && !b.FailedAt.Before(since)) {
			out = append(out, subscription.Replay{WebhookID: b.WebhookID, ReplayID: "msg_new_" + b.WebhookID, Events: b.Events})
			f.replays = append(f.replays, b.WebhookID)
		}
	}
	if webhookID != "" && len(out) == 0 {
		return nil, subscription.ErrNoFailedBatch
	}
	return out, nil
}

func TestWebhookOpsRoutes(t *testing.T) {
	tok, key := testKey(t, "acme", false)
	otherTok, other := testKey(t, "other", false)
	readOnly, ro := testKey(t, "acme", false, "user.webhooks.event.settings.read")
	ops := &fakeOps{failed: map[string][]subscription.FailedBatch{"ep1": {
		{WebhookID: "msg_1", FailedAt: time.Unix(1764201600, 0), Attempts: 10, Reason: "retry schedule exhausted", LastStatus: 503, Events: 4},
		{WebhookID: "msg_2", FailedAt: time.Unix(1764205200, 0), Attempts: 1, Reason: "endpoint answered 410 Gone", LastStatus: 410, Events: 1},
	}}}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{key, other, ro}, WebhookOps: ops})

	rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/state", tok, "")
	var st webhookStateJSON
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &st) != nil || st.State != "disabled" || st.Circuit != "open" {
		t.Errorf("state: %d %s", rec.Code, rec.Body)
	}
	// Another account's endpoint is unknown.
	if rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/state", otherTok, ""); rec.Code != 404 {
		t.Errorf("other account's state: %d, want 404", rec.Code)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/deliveries?limit=5", tok, ""); rec.Code != 200 {
		t.Errorf("deliveries: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/deliveries?limit=0", tok, ""); rec.Code != 400 {
		t.Errorf("limit=0: %d, want 400", rec.Code)
	}

	var list struct{ Result []failedBatchJSON }
	rec = do(t, h, "GET", "/bouncer/v1/webhooks/ep1/failed?since=1764203000", tok, "")
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Result) != 1 || list.Result[0].WebhookID != "msg_2" {
		t.Errorf("failed since: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/failed?since=yesterday", tok, ""); rec.Code != 400 {
		t.Errorf("bad since: %d, want 400", rec.Code)
	}

	// Replays need the update scope.
	if rec := do(t, h, "POST", "/bouncer/v1/webhooks/ep1/failed/msg_1/replay", readOnly, ""); rec.Code != http.StatusForbidden {
		t.Errorf("replay with a read-only key: %d, want 403", rec.Code)
	}
	rec = do(t, h, "POST", "/bouncer/v1/webhooks/ep1/failed/msg_1/replay", tok, "")
	if rec.Code != 202 {
		t.Errorf("replay one: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "POST", "/bouncer/v1/webhooks/ep1/failed/msg_nope/replay", tok, ""); rec.Code != 404 {
		t.Errorf("replay unknown: %d, want 404", rec.Code)
	}
	if rec := do(t, h, "POST", "/bouncer/v1/webhooks/ep1/replay", tok, `{}`); rec.Code != 400 {
		t.Errorf("replay without since: %d, want 400", rec.Code)
	}
	var res struct {
		Replayed int
		Result   []subscription.Replay
	}
	rec = do(t, h, "POST", "/bouncer/v1/webhooks/ep1/replay", tok, `{"since": 0}`)
	if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || res.Replayed != 2 || len(res.Result) != 2 {
		t.Errorf("replay since 0: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "POST", "/bouncer/v1/webhooks/ep1/replay", otherTok, `{"since": 0}`); rec.Code != 404 {
		t.Errorf("replay another account's endpoint: %d, want 404", rec.Code)
	}
	if len(ops.replays) != 3 {
		t.Errorf("replayed %v, want msg_1 then msg_1 and msg_2", ops.replays)
	}

	// Without delivery state the routes answer 404.
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{key}})
	if rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/state", tok, ""); rec.Code != 404 {
		t.Errorf("no WebhookOps: %d, want 404", rec.Code)
	}
}
