package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeOps is an in-memory WebhookOps for the handlers' logic; the real one
// (ClickHouse and Kafka) is tested in cmd/bouncer.
type fakeOps struct {
	mu      sync.Mutex
	failed  map[string][]FailedWebhookBatch // by endpoint id
	replays []string
	since   time.Time
}

func (f *fakeOps) WebhookState(_ context.Context, account, id string) (WebhookState, bool, error) {
	if account != "acme" || id != "ep1" {
		return WebhookState{}, false, nil
	}
	return WebhookState{ID: id, URL: "https://hooks.example.com/x", State: "disabled", DisabledAt: 1764201600,
		DisabledReason: "endpoint answered 410 Gone", Circuit: "open", LastFailure: 1764201600}, true, nil
}

func (f *fakeOps) WebhookDeliveries(_ context.Context, account, id string, limit int) ([]WebhookDelivery, error) {
	return []WebhookDelivery{{At: 1764201600, WebhookID: "msg_a", Attempt: 2, Result: "gone", Status: 410, DurationMS: 12, Response: "bye", Events: 3, Circuit: "open"}}[:min(limit, 1)], nil
}

func (f *fakeOps) FailedWebhookBatches(_ context.Context, account, id string, since time.Time, limit int) ([]FailedWebhookBatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FailedWebhookBatch
	for _, b := range f.failed[id] {
		if b.FailedAt >= since.Unix() && len(out) < limit {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeOps) ReplayWebhookBatches(_ context.Context, account, id, webhookID string, since time.Time) ([]Replay, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Replay
	for _, b := range f.failed[id] {
		if (webhookID != "" && b.WebhookID == webhookID) || (webhookID == "" && b.FailedAt >= since.Unix()) {
			out = append(out, Replay{WebhookID: b.WebhookID, ReplayID: "msg_new_" + b.WebhookID, Events: b.Events})
			f.replays = append(f.replays, b.WebhookID)
		}
	}
	if webhookID != "" && len(out) == 0 {
		return nil, ErrNoFailedBatch
	}
	return out, nil
}

func TestWebhookOpsRoutes(t *testing.T) {
	tok, key := testKey(t, "acme", false)
	otherTok, other := testKey(t, "other", false)
	readOnly, ro := testKey(t, "acme", false, "user.webhooks.event.settings.read")
	ops := &fakeOps{failed: map[string][]FailedWebhookBatch{"ep1": {
		{WebhookID: "msg_1", FailedAt: 1764201600, Attempts: 10, Reason: "retry schedule exhausted", LastStatus: 503, Events: 4},
		{WebhookID: "msg_2", FailedAt: 1764205200, Attempts: 1, Reason: "endpoint answered 410 Gone", LastStatus: 410, Events: 1},
	}}}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{key, other, ro}, WebhookOps: ops})

	rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/state", tok, "")
	var st WebhookState
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

	var list struct{ Result []FailedWebhookBatch }
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
		Result   []Replay
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
