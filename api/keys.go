package api

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// KeyStore lists every key, revoked ones included. sinks/clickhouse's
// Store implements it; the API asks for all accounts ("").
type KeyStore interface {
	APIKeys(ctx context.Context, accountID string) ([]accounts.Key, error)
}

// dummyHash is compared against when the key id is unknown, so an unknown
// id costs the same as a wrong secret.
var dummyHash = accounts.HashSecret("")

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
	keys   map[string]accounts.Key
	loaded time.Time
	tried  time.Time
	failed error // of the last reload; nil once one succeeds
}

// authenticate returns the key of a presented "SG.id.secret" string.
func (c *keyCache) authenticate(ctx context.Context, presented string) (accounts.Key, bool, error) {
	id, secret, ok := accounts.ParseKey(presented)
	if !ok {
		return accounts.Key{}, false, nil
	}
	k, found, err := c.lookup(ctx, id)
	if err != nil {
		return accounts.Key{}, false, err
	}
	want := dummyHash
	if found {
		want = k.Hash
	}
	match := subtle.ConstantTimeCompare([]byte(accounts.HashSecret(secret)), []byte(want)) == 1
	if !found || !match || k.Revoked {
		return accounts.Key{}, false, nil
	}
	return k, true, nil
}

func (c *keyCache) lookup(ctx context.Context, id string) (accounts.Key, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	k, found := c.keys[id]
	refresh := c.keys == nil || now.Sub(c.loaded) >= c.every/2 || !found
	if refresh && (c.tried.IsZero() || now.Sub(c.tried) >= c.missEvery) {
		c.tried = now
		// One request's cancellation does not fail the reload for others.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.every)
		keys, err := c.store.APIKeys(lctx, "")
		cancel()
		c.failed = err
		if err == nil {
			m := make(map[string]accounts.Key, len(keys))
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
		return accounts.Key{}, false, &Error{Code: EUnavailable, RetryAfter: storeRetryAfter, cause: fmt.Errorf("load API keys: %w", cause),
			Message: "API keys cannot be checked right now (their store does not answer): retry after the Retry-After seconds"}
	}
	return k, found, nil
}
