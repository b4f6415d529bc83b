package subscription

import (
	"crypto/ecdsa"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// EventTypes are the event names (the "event" field of SendGrid's event
// JSON) a subscription can select, in SendGrid's order.
var EventTypes = []string{
	"processed", "dropped", "delivered", "deferred", "bounce",
	"open", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe",
}

// Webhook is one subscription with its secrets in the clear: what the API
// shows and changes and what delivery signs with. At rest it is a Sealed.
type Webhook struct {
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
	// secret keeps signing for a grace period. At most two are stored.
	Secrets []sign.Secret
	// SignedKey signs SendGrid's Signed Event Webhook headers; nil: off.
	SignedKey *ecdsa.PrivateKey
	// PublicKey is the public half of SignedKey as SendGrid shows it
	// (base64 DER); "" when SendGrid signing is off.
	PublicKey string
	// DisabledAt is set by delivery when it gives up on the endpoint (410
	// Gone, or failing without a success for too long); zero: not disabled.
	// The customer re-enables it through the API, which clears it.
	DisabledAt     time.Time
	DisabledReason string
	FriendlyName   string
	// OAuth, when set, makes delivery send a bearer token it gets from
	// the receiver's token endpoint with the client-credentials grant.
	OAuth *OAuth
	// SecurityPolicy is the id of the account's security policy the
	// subscription uses ("" none): delivery applies it (Policy.Apply) over
	// OAuth and SignedKey, which keep the subscription's own settings.
	SecurityPolicy string
	// BouncerFields opts in to bouncer's own fields in delivered events
	// (the "bouncer" object of bounces: bounce_type, reason_code, rule);
	// false: SendGrid's fields only.
	BouncerFields bool
	// Created and UpdatedAt are kept to the second; UpdatedAt is the time
	// of the last change.
	Created   time.Time
	UpdatedAt time.Time
	// Version is the store's version of what was read; a write stores a
	// newer one (NextVersion), and the highest version wins.
	Version uint64
}

// OAuth is the OAuth 2.0 client-credentials grant (RFC 6749 section 4.4)
// delivery uses to authorize its requests: it asks TokenURL for a token as
// ClientID and ClientSecret (HTTP Basic, falling back to form fields), and
// sends "Authorization: Bearer <token>" with every batch.
type OAuth struct {
	ClientID string
	// ClientSecret is sealed at rest and never shown by the API; "" in
	// what the API reads without opening secrets.
	ClientSecret string
	TokenURL     string
	// Scopes are asked for in the token request's scope parameter; none:
	// the parameter is left out.
	Scopes []string
}

// Active reports whether the subscription should get deliveries.
func (w *Webhook) Active() bool { return w.Enabled && w.DisabledAt.IsZero() }

// Wants reports whether the subscription selected an event name.
func (w *Webhook) Wants(event string) bool { return w.Events[event] }

// State is "active", "disabled" (by delivery: DisabledReason says why) or
// "off" (the customer's switch).
func (w *Webhook) State() string {
	switch {
	case !w.DisabledAt.IsZero():
		return "disabled"
	case !w.Enabled:
		return "off"
	}
	return "active"
}

// Sealed is one version of a subscription as it is stored: the Webhook
// without its secrets (Secrets and SignedKey are nil), and the secrets
// sealed (package internal/secrets) to the subscription's account, id and
// purpose, so a store never holds a secret in the clear and a sealed value
// copied into another row does not open. Sealer makes and opens them.
type Sealed struct {
	Webhook
	// Deleted marks a tombstone, which keeps no secret.
	Deleted bool
	// SecretSealed is the current Standard Webhooks secret.
	SecretSealed string
	// PrevSecretSealed is the secret before the last rotation; it signs
	// until PrevSecretNotAfter. Empty: none.
	PrevSecretSealed   string
	PrevSecretNotAfter time.Time
	// Signed turns on SendGrid's Signed Event Webhook with the private key
	// SigningKeySealed, whose public part is Webhook.PublicKey.
	Signed           bool
	SigningKeySealed string
	// OAuthClientID, OAuthTokenURL and the sealed client secret hold
	// Webhook.OAuth (which is nil at rest); all "": no OAuth.
	OAuthClientID     string
	OAuthTokenURL     string
	OAuthSecretSealed string
}

// NextVersion is the version of a write derived from a row of version
// prev: the clock in nanoseconds, and above prev whatever the clock.
func NextVersion(prev uint64, now time.Time) uint64 {
	v := uint64(now.UnixNano())
	if v <= prev {
		v = prev + 1
	}
	return v
}
