package subscription

import (
	"context"
	"errors"
	"time"
)

// Store keeps the versions of subscriptions (sealed) and what delivery
// logged about them. sinks/clickhouse implements it. Reads return the
// newest version of each subscription; deleted ones are left out.
type Store interface {
	// Webhooks returns the account's subscriptions, oldest first.
	Webhooks(ctx context.Context, account string) ([]Sealed, error)
	// AllWebhooks returns every account's subscriptions in one read.
	AllWebhooks(ctx context.Context) ([]Sealed, error)
	// Webhook returns one subscription of account; ok false: none.
	Webhook(ctx context.Context, account, id string) (w Sealed, ok bool, err error)
	// WebhookByID returns a subscription whatever its account.
	WebhookByID(ctx context.Context, id string) (w Sealed, ok bool, err error)
	// WriteWebhooks stores versions of subscriptions in one write.
	WriteWebhooks(ctx context.Context, ws []Sealed) error
	// The accounts' security policies.
	PolicyStore

	// EndpointDeliveryState summarises the delivery log of an endpoint.
	EndpointDeliveryState(ctx context.Context, account, endpoint string) (DeliveryState, error)
	// EndpointDeliveries returns the newest log rows, newest first.
	EndpointDeliveries(ctx context.Context, account, endpoint string, limit int) ([]Delivery, error)
	// FailedBatches lists given-up batches since a time, oldest first.
	FailedBatches(ctx context.Context, account, endpoint string, since time.Time, limit int) ([]FailedBatch, error)
}

// ErrNoAccount is returned by account-scoped reads and writes called
// without an account, which would otherwise reach every account.
var ErrNoAccount = errors.New("webhooks: empty account id")

// ErrNoFailedBatch: the account's endpoint has no failed batch of that
// webhook-id.
var ErrNoFailedBatch = errors.New("no such failed webhook batch")

// Delivery is one row of the delivery log: an attempt, or a batch parked
// in a retry tier or given up.
type Delivery struct {
	EndpointID string
	AccountID  string
	WebhookID  string
	// Attempt is the attempt's number (1 for the first); for a parking,
	// the attempts made so far.
	Attempt int
	// Result is one of sinks/webhook's Result* classes.
	Result string
	// Status is the HTTP status (0 when there was no response).
	Status   int
	Duration time.Duration
	// Response says what happened in words the account may see: the HTTP
	// status and its standard name, a failure class's message
	// (safedial.Failure) or why a batch was parked. Never the receiver's
	// body or an error text: a webhook URL may point at an allowed internal
	// service, and its answers are not the tenant's to read. At most
	// MaxResponseLog bytes.
	Response string
	Events   int
	// Circuit is the endpoint's breaker state after the attempt.
	Circuit string
	At      time.Time
}

// MaxResponseLog bounds Delivery.Response.
const MaxResponseLog = 1024

// DeliveryState summarises an endpoint's delivery log.
type DeliveryState struct {
	// LastSuccess and LastFailure are the latest attempts of each kind
	// (zero: none); LastActivity the latest row of any kind.
	LastSuccess, LastFailure, LastActivity time.Time
	// Circuit is the breaker state the latest row reported: closed, open,
	// half-open, or "" before any delivery.
	Circuit string
	Rows    uint64
	// LastOAuthFailure is the latest attempt that got no OAuth access token
	// (zero: none) and LastOAuthError what it logged (see TokenError in
	// sinks/webhook).
	LastOAuthFailure time.Time
	LastOAuthError   string
}

// OAuthFailing reports whether the latest OAuth token request failed: a
// token failure after the last success.
func (s DeliveryState) OAuthFailing() bool {
	return !s.LastOAuthFailure.IsZero() && !s.LastOAuthFailure.Before(s.LastSuccess)
}

// FailedBatch is a batch delivery gave up on.
type FailedBatch struct {
	FailedAt   time.Time
	AccountID  string
	EndpointID string
	WebhookID  string
	Attempts   int
	Reason     string
	LastStatus int
	LastError  string
	Events     int
	// Batch is the batch as JSON, as in the dead-letter topic.
	Batch []byte
	// ReplayTopic is where a replay goes (the first retry tier of the
	// worker that gave the batch up).
	ReplayTopic string
	// ReplayedAt is the last replay (zero: never); ReplayID the webhook-id
	// the replay was sent under.
	ReplayedAt time.Time
	ReplayID   string
}

// Replay is one failed batch sent again under a new webhook-id.
type Replay struct {
	WebhookID string `json:"webhook_id"`
	ReplayID  string `json:"replay_id"`
	Events    int    `json:"events"`
}
