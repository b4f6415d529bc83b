package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
)

var _ api.WebhookOps = apiStore{}

// maxReplayBatches bounds one replay-since request.
const maxReplayBatches = 1000

func (a apiStore) WebhookState(ctx context.Context, account, id string) (api.WebhookState, bool, error) {
	w, ok, err := a.s.Webhook(ctx, account, id)
	if err != nil || !ok || w.Deleted {
		return api.WebhookState{}, false, err
	}
	ds, err := a.s.EndpointDeliveryState(ctx, account, id)
	if err != nil {
		return api.WebhookState{}, false, err
	}
	st := api.WebhookState{ID: w.ID, URL: w.URL, Enabled: w.Enabled, State: "active", DisabledReason: w.DisabledReason,
		Circuit: ds.Circuit, LastSuccess: unixOrZero(ds.LastSuccess), LastFailure: unixOrZero(ds.LastFailure), LastActivity: unixOrZero(ds.LastActivity)}
	switch {
	case !w.DisabledAt.IsZero():
		st.State, st.DisabledAt = "disabled", w.DisabledAt.Unix()
	case !w.Enabled:
		st.State = "off"
	}
	return st, true, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (a apiStore) WebhookDeliveries(ctx context.Context, account, id string, limit int) ([]api.WebhookDelivery, error) {
	rows, err := a.s.EndpointDeliveries(ctx, account, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.WebhookDelivery, len(rows))
	for i, r := range rows {
		out[i] = api.WebhookDelivery{At: r.At.Unix(), WebhookID: r.WebhookID, Attempt: r.Attempt, Result: r.Result, Status: r.Status,
			DurationMS: r.Duration.Milliseconds(), Response: r.Response, Events: r.Events, Circuit: r.Circuit}
	}
	return out, nil
}

func (a apiStore) FailedWebhookBatches(ctx context.Context, account, id string, since time.Time, limit int) ([]api.FailedWebhookBatch, error) {
	rows, err := a.s.FailedBatches(ctx, account, id, since, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.FailedWebhookBatch, len(rows))
	for i, r := range rows {
		out[i] = failedJSON(r)
	}
	return out, nil
}

func failedJSON(r clickhouse.FailedBatchRow) api.FailedWebhookBatch {
	return api.FailedWebhookBatch{WebhookID: r.WebhookID, FailedAt: r.FailedAt.Unix(), Attempts: r.Attempts, Reason: r.Reason,
		LastStatus: r.LastStatus, LastError: r.LastError, Events: r.Events, ReplayedAt: unixOrZero(r.ReplayedAt), ReplayID: r.ReplayID}
}

// ReplayWebhookBatches produces the failed batches, each under a new
// webhook-id, into the first retry tier of the worker that gave them up,
// then marks them replayed. A replay is a new delivery, not a retry: a new
// id means two replays of one batch can never be in flight under one id;
// receivers dedupe on the events' sg_event_id.
func (a apiStore) ReplayWebhookBatches(ctx context.Context, account, id, webhookID string, since time.Time) ([]api.Replay, error) {
	var rows []clickhouse.FailedBatchRow
	if webhookID != "" {
		r, err := a.s.FailedBatch(ctx, account, id, webhookID)
		if errors.Is(err, clickhouse.ErrNoFailedBatch) {
			return nil, api.ErrNoFailedBatch
		}
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	} else {
		var err error
		if rows, err = a.s.FailedBatches(ctx, account, id, since, maxReplayBatches); err != nil {
			return nil, err
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	if err := a.kafka.Validate(); err != nil {
		return nil, fmt.Errorf("replay needs Kafka: %w", err)
	}
	w, err := kafkatier.NewWriter(a.kafka, kafkatier.Topics{}, nil)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	now := time.Now()
	byTopic := map[string][]*webhook.Batch{}
	out := make([]api.Replay, 0, len(rows))
	marks := make([]clickhouse.FailedBatchRow, 0, len(rows))
	for _, r := range rows {
		if r.ReplayTopic == "" {
			return nil, fmt.Errorf("failed batch %s has no replay topic", r.WebhookID)
		}
		b, err := webhook.UnmarshalBatch(r.Batch)
		if err != nil {
			return nil, fmt.Errorf("failed batch %s: %w", r.WebhookID, err)
		}
		b.ReplayOf, b.WebhookID = b.WebhookID, webhook.NewWebhookID()
		b.Attempts, b.Tier, b.Due, b.Created = 0, 0, now, now
		b.Reason, b.LastStatus, b.LastError = "", 0, ""
		byTopic[r.ReplayTopic] = append(byTopic[r.ReplayTopic], b)
		out = append(out, api.Replay{WebhookID: r.WebhookID, ReplayID: b.WebhookID, Events: len(b.Events)})
		r.ReplayedAt, r.ReplayID = now, b.WebhookID
		marks = append(marks, r)
	}
	for topic, bs := range byTopic {
		if err := w.ReplayTo(ctx, topic, bs); err != nil {
			return nil, err
		}
	}
	if err := a.s.WriteFailedBatches(ctx, marks); err != nil {
		return nil, fmt.Errorf("replayed %d batches but could not mark them: %w", len(marks), err)
	}
	return out, nil
}
