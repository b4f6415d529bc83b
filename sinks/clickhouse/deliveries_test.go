package clickhouse

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

func TestDeliveryLogAndFailedBatches(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	rows := []subscription.Delivery{
		{At: t0, AccountID: "acme", EndpointID: "ep1", WebhookID: "msg_a", Attempt: 1, Result: "timeout", Duration: 10 * time.Second, Events: 3, Circuit: "closed"},
		{At: t0.Add(time.Minute), AccountID: "acme", EndpointID: "ep1", WebhookID: "msg_a", Attempt: 2, Result: "ok", Status: 200, Duration: 15 * time.Millisecond, Response: "thanks", Events: 3, Circuit: "closed"},
		{At: t0.Add(2 * time.Minute), AccountID: "acme", EndpointID: "ep1", WebhookID: "msg_b", Attempt: 1, Result: "http_error", Status: 503, Events: 1, Circuit: "open"},
		{At: t0.Add(3 * time.Minute), AccountID: "other", EndpointID: "ep1", WebhookID: "msg_c", Attempt: 1, Result: "ok", Status: 200, Events: 1, Circuit: "closed"},
	}
	if err := s.WriteDeliveries(ctx, rows); err != nil {
		t.Fatal(err)
	}
	st, err := s.EndpointDeliveryState(ctx, "acme", "ep1")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastSuccess.Equal(t0.Add(time.Minute)) || !st.LastFailure.Equal(t0.Add(2*time.Minute)) || st.Circuit != "open" || st.Rows != 3 {
		t.Errorf("state %+v: want last success %v, last failure %v, circuit open, 3 rows (the other account's row not counted)", st, t0.Add(time.Minute), t0.Add(2*time.Minute))
	}
	none, err := s.EndpointDeliveryState(ctx, "acme", "nope")
	if err != nil || !none.LastSuccess.IsZero() || none.Rows != 0 {
		t.Errorf("unknown endpoint: %+v %v", none, err)
	}
	if !st.LastOAuthFailure.IsZero() || st.LastOAuthError != "" || st.OAuthFailing() {
		t.Errorf("state %+v: an OAuth failure without any oauth row", st)
	}
	// An endpoint whose token requests fail: the state says so and why;
	// a success afterwards ends it, and the failure counts for failing-since.
	oauthRows := []subscription.Delivery{
		{At: t0, AccountID: "acme", EndpointID: "ep-oauth", WebhookID: "msg_o", Attempt: 1, Result: "ok", Status: 200, Events: 1},
		{At: t0.Add(time.Minute), AccountID: "acme", EndpointID: "ep-oauth", WebhookID: "msg_p", Attempt: 1, Result: "oauth",
			Response: "OAuth token request failed: the token endpoint answered HTTP 401 Unauthorized (invalid_client): check oauth_client_id and oauth_client_secret", Events: 1},
	}
	if err := s.WriteDeliveries(ctx, oauthRows); err != nil {
		t.Fatal(err)
	}
	ost, err := s.EndpointDeliveryState(ctx, "acme", "ep-oauth")
	if err != nil || !ost.OAuthFailing() || !ost.LastOAuthFailure.Equal(t0.Add(time.Minute)) || ost.LastOAuthError != oauthRows[1].Response ||
		!ost.LastFailure.Equal(t0.Add(time.Minute)) {
		t.Errorf("OAuth failing: state %+v %v", ost, err)
	}
	if since, err := s.FailingSince(ctx, "acme", "ep-oauth"); err != nil || !since.Equal(t0.Add(time.Minute)) {
		t.Errorf("OAuth failing: failing since %v %v, want %v", since, err, t0.Add(time.Minute))
	}
	if err := s.WriteDeliveries(ctx, []subscription.Delivery{{At: t0.Add(2 * time.Minute), AccountID: "acme", EndpointID: "ep-oauth",
		WebhookID: "msg_p", Attempt: 2, Result: "ok", Status: 200, Events: 1}}); err != nil {
		t.Fatal(err)
	}
	if ost, err := s.EndpointDeliveryState(ctx, "acme", "ep-oauth"); err != nil || ost.OAuthFailing() || ost.LastOAuthError == "" {
		t.Errorf("OAuth recovered: state %+v %v: want not failing, the last error kept", ost, err)
	}
	// ep1: ok at t0+1m, failure at t0+2m: failing since t0+2m.
	since, err := s.FailingSince(ctx, "acme", "ep1")
	if err != nil || !since.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("failing since %v %v, want %v", since, err, t0.Add(2*time.Minute))
	}
	if since, err := s.FailingSince(ctx, "other", "ep1"); err != nil || !since.IsZero() {
		t.Errorf("endpoint whose last attempt succeeded: failing since %v %v, want zero", since, err)
	}
	recent, err := s.EndpointDeliveries(ctx, "acme", "ep1", 2)
	if err != nil || len(recent) != 2 || recent[0].WebhookID != "msg_b" || recent[0].Status != 503 || recent[1].Duration != 15*time.Millisecond {
		t.Errorf("recent deliveries %+v %v", recent, err)
	}

	failed := []subscription.FailedBatch{
		{FailedAt: t0, AccountID: "acme", EndpointID: "ep1", WebhookID: "msg_x", Attempts: 10, Reason: "retry schedule exhausted", LastStatus: 500, Events: 2, Batch: []byte(`{"webhook_id":"msg_x"}`), ReplayTopic: "bouncer.webhooks.retry.5s"},
		{FailedAt: t0.Add(time.Hour), AccountID: "acme", EndpointID: "ep1", WebhookID: "msg_y", Attempts: 1, Reason: "endpoint answered 410 Gone", LastStatus: 410, Events: 1, Batch: []byte(`{}`)},
		{FailedAt: t0, AccountID: "other", EndpointID: "ep1", WebhookID: "msg_z", Attempts: 1, Reason: "x", Events: 1, Batch: []byte(`{}`)},
	}
	if err := s.WriteFailedBatches(ctx, failed); err != nil {
		t.Fatal(err)
	}
	// Written twice (a retried write), then marked replayed: still one row.
	if err := s.WriteFailedBatches(ctx, failed[:1]); err != nil {
		t.Fatal(err)
	}
	marked := failed[0]
	marked.ReplayedAt, marked.ReplayID = t0.Add(2*time.Hour), "msg_r"
	if err := s.WriteFailedBatches(ctx, []subscription.FailedBatch{marked}); err != nil {
		t.Fatal(err)
	}
	list, err := s.FailedBatches(ctx, "acme", "ep1", time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].WebhookID != "msg_x" || list[1].WebhookID != "msg_y" {
		t.Fatalf("failed batches %+v, want msg_x and msg_y once each", list)
	}
	if !list[0].ReplayedAt.Equal(t0.Add(2*time.Hour)) || list[0].ReplayID != "msg_r" || list[0].Attempts != 10 || string(list[0].Batch) != `{"webhook_id":"msg_x"}` || list[0].ReplayTopic != "bouncer.webhooks.retry.5s" {
		t.Errorf("replayed batch %+v", list[0])
	}
	if !list[1].ReplayedAt.IsZero() || list[1].LastStatus != 410 {
		t.Errorf("unreplayed batch %+v", list[1])
	}
	later, err := s.FailedBatches(ctx, "acme", "ep1", t0.Add(time.Minute), 100)
	if err != nil || len(later) != 1 || later[0].WebhookID != "msg_y" {
		t.Errorf("since an hour later: %+v %v", later, err)
	}
	one, err := s.FailedBatch(ctx, "acme", "ep1", "msg_y")
	if err != nil || one.Reason != "endpoint answered 410 Gone" {
		t.Errorf("FailedBatch: %+v %v", one, err)
	}
	if _, err := s.FailedBatch(ctx, "acme", "ep1", "msg_z"); !errors.Is(err, subscription.ErrNoFailedBatch) {
		t.Errorf("another account's batch: err %v, want subscription.ErrNoFailedBatch", err)
	}
}
