package kafkatier

import (
	"context"

	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/subscription"
)

// MaxReplayBatches bounds one replay-since request.
const MaxReplayBatches = 1000

// ReplayStore is where given-up batches are kept (sinks/clickhouse).
type ReplayStore interface {
	FailedBatches(ctx context.Context, account, endpoint string, since time.Time, limit int) ([]subscription.FailedBatch, error)
	// FailedBatch returns one, or subscription.ErrNoFailedBatch.
	FailedBatch(ctx context.Context, account, endpoint, webhookID string) (subscription.FailedBatch, error)
	WriteFailedBatches(ctx context.Context, rows []subscription.FailedBatch) error
}

// Replayer sends failed batches again (subscription.Replayer).
type Replayer struct {
	store ReplayStore
	conn  consumer.Conn
	now   func() time.Time
}

var _ subscription.Replayer = (*Replayer)(nil)

// NewReplayer returns a Replayer producing through conn (checked when a
// replay runs, so an API without Kafka serves everything else).
func NewReplayer(store ReplayStore, conn consumer.Conn) *Replayer {
	return &Replayer{store: store, conn: conn, now: time.Now}
}

// ReplayWebhookBatches produces the failed batches, each under a new
// webhook-id, into the first retry tier of the worker that gave them up,
// then marks them replayed. A replay is a new delivery, not a retry: a new
// id means two replays of one batch can never be in flight under one id;
// receivers dedupe on the events' sg_event_id.
func (r *Replayer) ReplayWebhookBatches(ctx context.Context, account, id, webhookID string, since time.Time) ([]subscription.Replay, error) {
	var rows []subscription.FailedBatch
	if webhookID != "" {
		b, err := r.store.FailedBatch(ctx, account, id, webhookID)
		if err != nil {
			return nil, err
		}
		rows = append(rows, b)
	} else {
		var err error
		if rows, err = r.store.FailedBatches(ctx, account, id, since, MaxReplayBatches); err != nil {
			return nil, err
		}
	}
	if len(rows) == 0 {
		return nil, nil
	}
	if err := r.conn.Validate(); err != nil {
		return nil, fmt.Errorf("replay needs Kafka: %w", err)
	}
	w, err := NewWriter(r.conn, Topics{})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	now := r.now()
	byTopic := map[string][]*webhook.Batch{}
	out := make([]subscription.Replay, 0, len(rows))
	marks := make([]subscription.FailedBatch, 0, len(rows))
	for _, row := range rows {
		if row.ReplayTopic == "" {
			return nil, fmt.Errorf("failed batch %s has no replay topic", row.WebhookID)
		}
		b, err := webhook.UnmarshalBatch(row.Batch)
		if err != nil {
			return nil, fmt.Errorf("failed batch %s: %w", row.WebhookID, err)
		}
		b.ReplayOf, b.WebhookID = b.WebhookID, webhook.NewWebhookID()
		b.Attempts, b.Tier, b.Due, b.Created = 0, 0, now, now
		b.Reason, b.LastStatus, b.LastError = "", 0, ""
		byTopic[row.ReplayTopic] = append(byTopic[row.ReplayTopic], b)
		out = append(out, subscription.Replay{WebhookID: row.WebhookID, ReplayID: b.WebhookID, Events: len(b.Events)})
		row.ReplayedAt, row.ReplayID = now, b.WebhookID
		marks = append(marks, row)
	}
	for topic, bs := range byTopic {
		if err := w.ReplayTo(ctx, topic, bs); err != nil {
			return nil, err
		}
	}
	if err := r.store.WriteFailedBatches(ctx, marks); err != nil {
		return nil, fmt.Errorf("replayed %d batches but could not mark them: %w", len(marks), err)
	}
	return out, nil
}
