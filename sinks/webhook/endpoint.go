// Package webhook delivers events to the URLs customers subscribe: matched
// per subscription, batched per endpoint in SendGrid's format, signed, sent
// with retries parked in Kafka delay topics, isolated per endpoint.
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
