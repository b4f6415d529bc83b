// Package accounts holds what an account owns besides its events, lists
// and webhook subscriptions: its API keys, its dashboard sessions and its
// mail settings (bounce forwarding). Every other domain package names the
// account by its id; this one gives the account's own things one type each,
// used alike by the API that checks and changes them, the store that keeps
// them (sinks/clickhouse) and the forwarder that reads the settings.
//
// # Contract
//
//   - A Key never holds its secret: only the SHA-256 (hex) of it is ever
//     stored or compared (HashSecret). NewKey returns the secret once, to be
//     shown to the user and forgotten.
//   - A Session never holds its cookie's id: only the SHA-256 (hex) of it.
//   - Keys, sessions and settings are stored as versions; the newest
//     version wins whatever order writes arrive in. A revoked key stays
//     revoked; an ended session stays ended.
//   - Every value carries its AccountID; stores are asked for one account
//     at a time, except the reads that serve every account at once (all
//     keys for the API's key cache, every enabled forwarding setting for
//     the forwarder).
package accounts

import (
	"errors"
	"time"
)

// Key is what is known of an API key: never the secret, only the SHA-256
// (hex) of it.
type Key struct {
	AccountID, KeyID string
	// Hash is the lower-case hex SHA-256 of the secret (HashSecret).
	Hash string
	// Name is the label given when the key was made ("" when none).
	Name string
	// Scopes the key may use (SendGrid's names); empty means all.
	Scopes  []string
	Created time.Time
	Revoked bool
}

// ErrNoKey is returned for a key id that does not exist.
var ErrNoKey = errors.New("no such API key")

// Session is one state of a dashboard login session: never the cookie's
// id, only its SHA-256. The states of one session merge: the latest Seen
// counts, and Ended, once stored, holds for good.
type Session struct {
	// IDHash is the lower-case hex SHA-256 of the cookie's id.
	IDHash                    string
	AccountID, KeyID, KeyHash string
	// Created is the login; Seen the latest use stored.
	Created, Seen time.Time
	Ended         bool
}

// ForwardBounce is an account's forward_bounce mail setting (SendGrid's
// name): whether each hard bounce is forwarded by email, and to which
// address. An account that never set it has {Enabled: false, Email: ""};
// an enabled setting always has an address (the API refuses to enable one
// without).
type ForwardBounce struct {
	AccountID string
	Enabled   bool
	// Email is one bare address, or "" when none was set.
	Email string
	// Updated is when the setting was last changed (zero when never).
	Updated time.Time
}

// BouncePurge is an account's bounce_purge mail setting (SendGrid's name):
// when enabled, entries of the bounces list older than HardDays (hard
// bounces) or SoftDays (soft ones: status 4.x.x, which only imports bring,
// the pipeline lists hard bounces only) leave the list. 0 days: that kind
// is not purged. An account that never set it has everything zero.
type BouncePurge struct {
	AccountID          string
	Enabled            bool
	HardDays, SoftDays int
	// Updated is when the setting was last changed (zero when never).
	Updated time.Time
}

// MaxPurgeDays is the most days a bounce purge setting takes (ten years).
const MaxPurgeDays = 3650
