package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/subscription"
)

// WriteWebhooks inserts versions of subscriptions (tombstones when
// Deleted) as one insert. The caller sets Version above the version it read.
func (s *Store) WriteWebhooks(ctx context.Context, ws []subscription.Sealed) error {
	for _, w := range ws {
		if w.AccountID == "" || w.ID == "" {
			return fmt.Errorf("webhooks: write needs an account and an id")
		}
	}
	return s.insert(ctx, qInsertWebhooks, func(b driver.Batch) error {
		for _, w := range ws {
			row := []any{w.AccountID, w.ID, w.Version, b2u(w.Deleted), w.URL, b2u(w.Enabled), w.FriendlyName}
			for _, ev := range webhookEvents {
				row = append(row, b2u(w.Events[ev]))
			}
			row = append(row, w.SecretSealed, w.PrevSecretSealed, webhookTime(w.PrevSecretNotAfter), b2u(w.Signed),
				w.SigningKeySealed, w.PublicKey, webhookTime(w.DisabledAt), w.DisabledReason, webhookTime(w.Created), webhookTime(w.UpdatedAt),
				w.OAuthClientID, w.OAuthTokenURL, w.OAuthSecretSealed, w.SecurityPolicy, b2u(w.BouncerFields))
			if err := b.Append(row...); err != nil {
				return err
			}
		}
		return nil
	})
}

// Webhooks returns the current subscriptions of account, oldest first.
func (s *Store) Webhooks(ctx context.Context, account string) ([]subscription.Sealed, error) {
	if account == "" {
		return nil, subscription.ErrNoAccount
	}
	return s.webhooks(ctx, qWebhooksOfAccount, account)
}

var _ subscription.HeadStore = (*Store)(nil)

// WebhookHeads returns the newest version of every subscription account
// ever had (deleted ones too), oldest first, for the per-account limits
// (subscription.HeadStore).
func (s *Store) WebhookHeads(ctx context.Context, account string) ([]claims.Existing, error) {
	if account == "" {
		return nil, subscription.ErrNoAccount
	}
	rows, err := s.conn.Query(ctx, qWebhookHeads.SQL, account)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qWebhookHeads.Name, err)
	}
	defer rows.Close()
	var out []claims.Existing
	for rows.Next() {
		var h claims.Existing
		var deleted uint8
		if err := rows.Scan(&h.ID, &h.URL, &h.Version, &deleted); err != nil {
			return nil, fmt.Errorf("%s: %w", qWebhookHeads.Name, err)
		}
		h.Deleted = deleted == 1
		out = append(out, h)
	}
	return out, rows.Err()
}

// AllWebhooks returns the current subscriptions of every account, ordered
// by account and then oldest first: one query, for delivery.
func (s *Store) AllWebhooks(ctx context.Context) ([]subscription.Sealed, error) {
	return s.webhooks(ctx, qWebhooksAll)
}

// Webhook returns the current state of one subscription of account; ok is
// false when the account has no such subscription (or it was deleted).
func (s *Store) Webhook(ctx context.Context, account, id string) (w subscription.Sealed, ok bool, err error) {
	if account == "" {
		return subscription.Sealed{}, false, subscription.ErrNoAccount
	}
	ws, err := s.webhooks(ctx, qWebhookOfAccount, account, id)
	if err != nil || len(ws) == 0 {
		return subscription.Sealed{}, false, err
	}
	return ws[0], true, nil
}

// WebhookByID returns the current state of a subscription whatever its
// account, for delivery, which knows endpoints by id.
func (s *Store) WebhookByID(ctx context.Context, id string) (w subscription.Sealed, ok bool, err error) {
	ws, err := s.webhooks(ctx, qWebhookByID, id)
	if err != nil || len(ws) == 0 {
		return subscription.Sealed{}, false, err
	}
	return ws[0], true, nil
}

func (s *Store) webhooks(ctx context.Context, q Query, args ...any) ([]subscription.Sealed, error) {
	rows, err := s.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []subscription.Sealed
	var deleted, enabled, signed, bouncerFields uint8
	events := make([]uint8, len(webhookEvents))
	for rows.Next() {
		var w subscription.Sealed
		dest := []any{&w.AccountID, &w.ID, &w.Version, &deleted, &w.URL, &enabled, &w.FriendlyName}
		for i := range events {
			dest = append(dest, &events[i])
		}
		dest = append(dest, &w.SecretSealed, &w.PrevSecretSealed, &w.PrevSecretNotAfter, &signed,
			&w.SigningKeySealed, &w.PublicKey, &w.DisabledAt, &w.DisabledReason, &w.Created, &w.UpdatedAt,
			&w.OAuthClientID, &w.OAuthTokenURL, &w.OAuthSecretSealed, &w.SecurityPolicy, &bouncerFields)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		w.Deleted, w.Enabled, w.Signed, w.BouncerFields = deleted == 1, enabled == 1, signed == 1, bouncerFields == 1
		w.Events = make(map[string]bool, len(webhookEvents))
		for i, ev := range webhookEvents {
			if events[i] == 1 {
				w.Events[ev] = true
			}
		}
		w.PrevSecretNotAfter, w.DisabledAt = webhookTimeFrom(w.PrevSecretNotAfter), webhookTimeFrom(w.DisabledAt)
		w.Created, w.UpdatedAt = webhookTimeFrom(w.Created), webhookTimeFrom(w.UpdatedAt)
		out = append(out, w)
	}
	return out, rows.Err()
}

// webhookTime is the DateTime value of t: whole seconds in UTC, and the unix
// epoch (the column's zero) for the zero time.
func webhookTime(t time.Time) time.Time {
	if t.IsZero() || t.Unix() <= 0 {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC().Truncate(time.Second)
}

// webhookTimeFrom maps the column's zero (the unix epoch) back to the zero time.
func webhookTimeFrom(t time.Time) time.Time {
	if t.Unix() <= 0 {
		return time.Time{}
	}
	return t.UTC()
}

// WriteSecurityPolicies inserts versions of policies (tombstones when
// Deleted) as one insert.
func (s *Store) WriteSecurityPolicies(ctx context.Context, ps []subscription.SealedPolicy) error {
	for _, p := range ps {
		if p.AccountID == "" || p.ID == "" {
			return fmt.Errorf("webhook security policies: write needs an account and an id")
		}
	}
	return s.insert(ctx, qInsertPolicies, func(b driver.Batch) error {
		for _, p := range ps {
			scopes := p.OAuthScopes
			if scopes == nil {
				scopes = []string{}
			}
			if err := b.Append(p.AccountID, p.ID, p.Version, b2u(p.Deleted), p.Name, p.OAuthClientID, p.OAuthTokenURL,
				scopes, p.OAuthSecretSealed, b2u(p.Signed), p.SigningKeySealed, p.PublicKey,
				webhookTime(p.Created), webhookTime(p.UpdatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// SecurityPolicies returns the current policies of account, oldest first.
func (s *Store) SecurityPolicies(ctx context.Context, account string) ([]subscription.SealedPolicy, error) {
	if account == "" {
		return nil, subscription.ErrNoAccount
	}
	return s.policies(ctx, qPoliciesOfAccount, account)
}

// AllSecurityPolicies returns every account's current policies.
func (s *Store) AllSecurityPolicies(ctx context.Context) ([]subscription.SealedPolicy, error) {
	return s.policies(ctx, qPoliciesAll)
}

func (s *Store) policies(ctx context.Context, q Query, args ...any) ([]subscription.SealedPolicy, error) {
	rows, err := s.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []subscription.SealedPolicy
	for rows.Next() {
		var p subscription.SealedPolicy
		var deleted, signed uint8
		if err := rows.Scan(&p.AccountID, &p.ID, &p.Version, &deleted, &p.Name, &p.OAuthClientID, &p.OAuthTokenURL,
			&p.OAuthScopes, &p.OAuthSecretSealed, &signed, &p.SigningKeySealed, &p.PublicKey, &p.Created, &p.UpdatedAt); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		p.Deleted, p.Signed = deleted == 1, signed == 1
		p.Created, p.UpdatedAt = webhookTimeFrom(p.Created), webhookTimeFrom(p.UpdatedAt)
		out = append(out, p)
	}
	return out, rows.Err()
}
