package subscription

import (
	"context"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/internal/secrets"
)

// Registry is delivery's view of every account's subscriptions (it
// implements sinks/webhook's Registry).
type Registry struct {
	store  Store
	sealer *Sealer
	now    func() time.Time
}

// NewRegistry returns delivery's registry: Endpoints reads every account's
// subscriptions in one read, with their secrets opened with keys (cheap
// enough to poll every couple of seconds: unchanged rows are not decrypted
// again), and DisableEndpoint records delivery giving up on one. A
// subscription whose secrets do not open with keys (a wrong
// BOUNCER_SECRET_KEY) is returned inactive, with DisabledReason saying so,
// rather than failing every account's deliveries.
func NewRegistry(store Store, keys *secrets.Keyring) *Registry {
	return &Registry{store: store, sealer: NewSealer(keys), now: time.Now}
}

// Endpoints returns every subscription, active or not.
func (r *Registry) Endpoints(ctx context.Context) ([]Webhook, error) {
	rows, err := r.store.AllWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	var sealedPolicies []SealedPolicy
	for _, row := range rows {
		if row.SecurityPolicy != "" {
			// Policies are read only when some subscription uses one.
			if sealedPolicies, err = r.store.AllSecurityPolicies(ctx); err != nil {
				return nil, err
			}
			break
		}
	}
	r.sealer.Begin()
	defer r.sealer.End()
	type policyKey struct{ account, id string }
	policies := map[policyKey]*SealedPolicy{}
	for i := range sealedPolicies {
		policies[policyKey{sealedPolicies[i].AccountID, sealedPolicies[i].ID}] = &sealedPolicies[i]
	}
	out := make([]Webhook, 0, len(rows))
	for _, row := range rows {
		w, err := r.sealer.Open(row)
		if err == nil && w.SecurityPolicy != "" {
			// A policy deleted with force=true leaves the subscription its
			// own settings.
			if sp := policies[policyKey{w.AccountID, w.SecurityPolicy}]; sp != nil {
				var p Policy
				if p, err = r.sealer.OpenPolicy(*sp); err == nil {
					p.Apply(&w)
				}
			}
		}
		if err != nil {
			w.Enabled, w.Secrets, w.SignedKey, w.OAuth = false, nil, nil, nil
			if w.DisabledAt.IsZero() {
				w.DisabledAt = r.now()
			}
			w.DisabledReason = fmt.Sprintf("%v: is BOUNCER_SECRET_KEY the key (or keyring) the API sealed it with?", err)
		}
		out = append(out, w)
	}
	return out, nil
}

// DisableEndpoint marks the subscription disabled by delivery, once: an
// endpoint already disabled keeps its first time and reason; a deleted one
// stays deleted. The customer re-enables it with PATCH enabled=true.
func (r *Registry) DisableEndpoint(ctx context.Context, id string, at time.Time, reason string) error {
	row, ok, err := r.store.WebhookByID(ctx, id)
	if err != nil || !ok || !row.DisabledAt.IsZero() {
		return err
	}
	row.DisabledAt, row.DisabledReason, row.UpdatedAt = at, reason, at
	row.Version = NextVersion(row.Version, r.now())
	return r.store.WriteWebhooks(ctx, []Sealed{row})
}

// Reseal rewrites the subscriptions with a value sealed under another key
// than keys' first, and reports how many it rewrote of how many there are.
// ResealPolicies does the same for the security policies.
// Each write is one version above the row it read, so a change made
// meanwhile (with a clock-based version) wins over it. The secrets do not
// change: receivers notice nothing.
func Reseal(ctx context.Context, store Store, keys *secrets.Keyring) (resealed, total int, err error) {
	rows, err := store.AllWebhooks(ctx)
	if err != nil {
		return 0, 0, err
	}
	current := keys.KeyIDs()[0]
	o := NewSealer(keys)
	var out []Sealed
	for _, row := range rows {
		stale := false
		for _, sealed := range []string{row.SecretSealed, row.PrevSecretSealed, row.SigningKeySealed, row.OAuthSecretSealed} {
			if sealed != "" && sealedKeyID(sealed) != current {
				stale = true
			}
		}
		if !stale {
			continue
		}
		w, err := o.Open(row)
		if err != nil {
			return 0, len(rows), fmt.Errorf("account %s: %w", row.AccountID, err)
		}
		next, err := o.Seal(row.AccountID, w, row.Version+1)
		if err != nil {
			return 0, len(rows), err
		}
		out = append(out, next)
	}
	if len(out) == 0 {
		return 0, len(rows), nil
	}
	return len(out), len(rows), store.WriteWebhooks(ctx, out)
}

// ResealPolicies is Reseal for the security policies.
func ResealPolicies(ctx context.Context, store PolicyStore, keys *secrets.Keyring) (resealed, total int, err error) {
	current := keys.KeyIDs()[0]
	o := NewSealer(keys)
	rows, err := store.AllSecurityPolicies(ctx)
	if err != nil {
		return 0, 0, err
	}
	var out []SealedPolicy
	for _, row := range rows {
		stale := false
		for _, sealed := range []string{row.OAuthSecretSealed, row.SigningKeySealed} {
			if sealed != "" && sealedKeyID(sealed) != current {
				stale = true
			}
		}
		if !stale {
			continue
		}
		p, err := o.OpenPolicy(row)
		if err != nil {
			return 0, len(rows), fmt.Errorf("account %s: %w", row.AccountID, err)
		}
		next, err := o.SealPolicy(row.AccountID, p, row.Version+1)
		if err != nil {
			return 0, len(rows), err
		}
		out = append(out, next)
	}
	if len(out) == 0 {
		return 0, len(rows), nil
	}
	return len(out), len(rows), store.WriteSecurityPolicies(ctx, out)
}
