package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Key is what the API knows of an API key: never the secret, only the
// SHA-256 (hex) of it.
type Key struct {
	AccountID, KeyID string
	// Hash is the lower-case hex SHA-256 of the secret.
	Hash string
	// Scopes the key may use (SendGrid's names); empty means all.
	Scopes  []string
	Revoked bool
}

// KeyStore lists every key, revoked ones included.
type KeyStore interface {
	APIKeys(ctx context.Context) ([]Key, error)
}

// Keys look like SendGrid's, so SendGrid's client libraries accept them:
// "SG." + key id (16 random bytes) + "." + secret (32 random bytes), both
// base64url without padding (no '.' in either); a key id never starts with
// '-' (keys made before this rule may: `bouncer keys revoke -- ID` takes them).
const keyPrefix = "SG."

// NewKey makes a key from rand. It returns the key to give the user once,
// its id, and the hash to store.
func NewKey(rand io.Reader) (key, keyID, hash string, err error) {
	var id [16]byte
	var secret [32]byte
	// A key id never starts with '-', so `bouncer keys revoke ID` cannot
	// read it as a flag: draw again (1 time in 64).
	for keyID == "" || keyID[0] == '-' {
		if _, err := io.ReadFull(rand, id[:]); err != nil {
			return "", "", "", fmt.Errorf("new key: %w", err)
		}
		keyID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	if _, err := io.ReadFull(rand, secret[:]); err != nil {
		return "", "", "", fmt.Errorf("new key: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(secret[:])
	return keyPrefix + keyID + "." + s, keyID, HashSecret(s), nil
}

// HashSecret is the stored form of a key's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// parseKey splits "SG.<key id>.<secret>".
func parseKey(key string) (keyID, secret string, ok bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", "", false
	}
	keyID, secret, ok = strings.Cut(rest, ".")
	if !ok || keyID == "" || secret == "" || len(key) > 200 {
		return "", "", false
	}
	return keyID, secret, true
}

// dummyHash is compared against when the key id is unknown, so an unknown
// id costs the same as a wrong secret.
var dummyHash = HashSecret("")

// keyCache holds every key in memory. It reloads them once they are older
// than half of every, and on an unknown key id at most once per missEvery
// (so a new key works at once). It never trusts keys loaded longer ago than
// every: while the store cannot be reached after that, lookups fail closed
// with 503 and Retry-After, so a revoked key stops working within every,
// outage or not. An unknown key id while the last reload failed is 503 too
// (the key may be new), not 401.
type keyCache struct {
	store     KeyStore
	every     time.Duration
	missEvery time.Duration
	now       func() time.Time

	mu     sync.Mutex // held during a reload: requests wait for it
	keys   map[string]Key
	loaded time.Time
	tried  time.Time
	failed error // of the last reload; nil once one succeeds
}

// authenticate returns the key of a presented "SG.id.secret" string.
func (c *keyCache) authenticate(ctx context.Context, presented string) (Key, bool, error) {
	id, secret, ok := parseKey(presented)
	if !ok {
		return Key{}, false, nil
	}
	k, found, err := c.lookup(ctx, id)
	if err != nil {
		return Key{}, false, err
	}
	want := dummyHash
	if found {
		want = k.Hash
	}
	match := subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(want)) == 1
	if !found || !match || k.Revoked {
		return Key{}, false, nil
	}
	return k, true, nil
}

func (c *keyCache) lookup(ctx context.Context, id string) (Key, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	k, found := c.keys[id]
	refresh := c.keys == nil || now.Sub(c.loaded) >= c.every/2 || !found
	if refresh && (c.tried.IsZero() || now.Sub(c.tried) >= c.missEvery) {
		c.tried = now
		// One request's cancellation does not fail the reload for others.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.every)
		keys, err := c.store.APIKeys(lctx)
		cancel()
		c.failed = err
		if err == nil {
			m := make(map[string]Key, len(keys))
			for _, k := range keys {
				m[k.KeyID] = k
			}
			c.keys, c.loaded = m, now
			k, found = m[id]
		}
	}
	if c.keys == nil || now.Sub(c.loaded) >= c.every || !found && c.failed != nil {
		cause := c.failed
		if cause == nil {
			cause = fmt.Errorf("keys loaded %v ago, not reloaded since", now.Sub(c.loaded))
		}
		return Key{}, false, &Error{Code: EUnavailable, RetryAfter: storeRetryAfter, cause: fmt.Errorf("load API keys: %w", cause),
			Message: "API keys cannot be checked right now (their store does not answer): retry after the Retry-After seconds"}
	}
	return k, found, nil
}
