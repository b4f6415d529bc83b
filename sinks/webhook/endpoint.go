// Package webhook delivers events to the URLs customers subscribe: matched
// per subscription, batched per endpoint in SendGrid's format, signed, sent
// with retries parked in Kafka delay topics, isolated per endpoint.
//
// # Guarantees
//
// At least once. Dispatcher.EventHandler, driven by the webhook consumer
// group, returns (so the group commits) only when every event of the
// consumed batch that matched an active subscription of its account is
// either in a batch the endpoint answered with 2xx, or in Kafka: parked in
// a retry tier (Parker.Retry) or given up (Parker.GiveUp: the dead-letter
// topic and the failed-batches table, from where operators replay it). A
// crash at any point redelivers; nothing is dropped silently. Events
// arrive as the producer sent them, with the sg_event_id bouncer derived
// added when the producer sent none; receivers dedupe on sg_event_id.
//
// One webhook-id per batch, for all its attempts. Never two concurrent
// sends of one webhook-id: in a process, a retried batch whose id is
// already queued or sending waits for that one; across processes, tier
// messages are keyed by webhook-id (one partition, one owner at a time),
// a tier consumer finishes its attempts before its partition moves, a
// copy parked for a slow attempt is due only after that attempt's
// deadline, and a replay goes out under a new id.
//
// Isolation. Each endpoint has a lane: a bounded queue (Config.QueueEvents;
// beyond it, batches go straight to the first retry tier), a node-wide
// bound (GlobalEvents), an in-flight limit that halves on 429, 5xx and
// timeouts and grows back on success, and a circuit breaker that parks
// rather than drops. An attempt running past SlowAfter parks a copy of its
// batch and releases the consumer, so an endpoint that hangs delays the
// others by about SlowAfter once, not by its timeouts.
//
// Not guaranteed: order, and exactly once (a crash, a rebalance, or a
// slow attempt that succeeds on one worker while another sends its copy
// can send a batch twice, under the same webhook-id).
package webhook

import (
	"context"
	"crypto/ecdsa"
	"time"
)

// EventTypes are the event names (the "event" field of SendGrid's event
// JSON) a subscription can select, in SendGrid's order.
var EventTypes = []string{
	"processed", "dropped", "delivered", "deferred", "bounce",
	"open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe",
}

// Endpoint is one webhook subscription as delivery sees it: secrets are
// already decrypted (they are encrypted at rest; see the registry).
type Endpoint struct {
	// ID is the subscription's id (a UUID, SendGrid's webhook id).
	ID        string
	AccountID string
	URL       string
	// Enabled is the customer's switch.
	Enabled bool
	// Events holds the selected event names (keys from EventTypes).
	Events map[string]bool
	// Secrets sign Standard Webhooks requests (webhook-signature), newest
	// first; each signs until its NotAfter (zero: no end), so a rotated-out
	// secret keeps signing for a grace period.
	Secrets []Secret
	// SignedKey signs SendGrid's Signed Event Webhook headers; nil: off.
	SignedKey *ecdsa.PrivateKey
	// DisabledAt is set by delivery when it gives up on the endpoint (410
	// Gone, or failing without a success for too long); zero: not disabled.
	// The customer re-enables it through the API, which clears it.
	DisabledAt     time.Time
	DisabledReason string
	// UpdatedAt is the time of the last change, newer wins.
	UpdatedAt time.Time
}

// Secret is one Standard Webhooks signing secret (the raw key bytes, the
// part of "whsec_<base64>" after the prefix, decoded).
type Secret struct {
	Key      []byte
	NotAfter time.Time
}

// Active reports whether the endpoint should get deliveries.
func (e *Endpoint) Active() bool { return e.Enabled && e.DisabledAt.IsZero() }

// Wants reports whether the endpoint subscribed to an event name.
func (e *Endpoint) Wants(event string) bool { return e.Events[event] }

// Registry is where delivery reads the subscriptions of every account and
// records what it decided about an endpoint.
type Registry interface {
	// Endpoints returns every subscription, active or not.
	Endpoints(ctx context.Context) ([]Endpoint, error)
	// DisableEndpoint records that delivery gave up on an endpoint.
	DisableEndpoint(ctx context.Context, id string, at time.Time, reason string) error
}
