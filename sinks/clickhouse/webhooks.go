package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Webhook is one version of a webhook subscription as the webhooks table
// holds it. Secret fields are sealed strings (package internal/secrets);
// this package never sees a secret in the clear.
type Webhook struct {
	AccountID, ID string
	// Version orders the writes of one subscription: the highest wins.
	Version uint64
	// Deleted marks a tombstone.
	Deleted      bool
	URL          string
	Enabled      bool
	FriendlyName string
	// Events holds the selected event names (see WebhookEvents); other
	// names are ignored.
	Events map[string]bool
	// SecretSealed is the current Standard Webhooks secret, sealed.
	SecretSealed string
	// PrevSecretSealed is the secret before the last rotation; it signs
	// until PrevSecretNotAfter. Empty: none.
	PrevSecretSealed   string
	PrevSecretNotAfter time.Time
	// Signed turns on SendGrid's Signed Event Webhook with the sealed
	// private key SigningKeySealed, whose public part is PublicKey.
	Signed           bool
	SigningKeySealed string
	PublicKey        string
	// DisabledAt (zero: not disabled) and DisabledReason are set by
	// delivery when it gives up on the endpoint.
	DisabledAt     time.Time
	DisabledReason string
	// Created and Updated are stored to the second.
	Created, Updated time.Time
}

// ErrNoAccount is returned by the account-scoped reads when called without
// an account, which would otherwise read every account.
var ErrNoAccount = errors.New("webhooks: empty account id")

// WriteWebhook inserts one version of a subscription (a tombstone when
// Deleted). The caller sets Version above the version it read.
func (s *Store) WriteWebhook(ctx context.Context, w Webhook) error {
	return s.WriteWebhooks(ctx, []Webhook{w})
}

// WriteWebhooks inserts versions of subscriptions as one insert.
func (s *Store) WriteWebhooks(ctx context.Context, ws []Webhook) error {
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
				w.SigningKeySealed, w.PublicKey, webhookTime(w.DisabledAt), w.DisabledReason, webhookTime(w.Created), webhookTime(w.Updated))
			if err := b.Append(row...); err != nil {
				return err
			}
		}
		return nil
	})
}

// Webhooks returns the current subscriptions of account, oldest first.
func (s *Store) Webhooks(ctx context.Context, account string) ([]Webhook, error) {
	if account == "" {
		return nil, ErrNoAccount
	}
	return s.webhooks(ctx, qWebhooksOfAccount, account)
}

// AllWebhooks returns the current subscriptions of every account, ordered
// by account and then oldest first: one query, for delivery.
func (s *Store) AllWebhooks(ctx context.Context) ([]Webhook, error) {
	return s.webhooks(ctx, qWebhooksAll)
}

// Webhook returns the current state of one subscription of account; ok is
// false when the account has no such subscription (or it was deleted).
func (s *Store) Webhook(ctx context.Context, account, id string) (w Webhook, ok bool, err error) {
	if account == "" {
		return Webhook{}, false, ErrNoAccount
	}
	ws, err := s.webhooks(ctx, qWebhookOfAccount, account, id)
	if err != nil || len(ws) == 0 {
		return Webhook{}, false, err
	}
	return ws[0], true, nil
}

// WebhookByID returns the current state of a subscription whatever its
// account, for delivery, which knows endpoints by id.
func (s *Store) WebhookByID(ctx context.Context, id string) (w Webhook, ok bool, err error) {
	ws, err := s.webhooks(ctx, qWebhookByID, id)
	if err != nil || len(ws) == 0 {
		return Webhook{}, false, err
	}
	return ws[0], true, nil
}

func (s *Store) webhooks(ctx context.Context, q Query, args ...any) ([]Webhook, error) {
	rows, err := s.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []Webhook
	var deleted, enabled, signed uint8
	events := make([]uint8, len(webhookEvents))
	for rows.Next() {
		var w Webhook
		dest := []any{&w.AccountID, &w.ID, &w.Version, &deleted, &w.URL, &enabled, &w.FriendlyName}
		for i := range events {
			dest = append(dest, &events[i])
		}
		dest = append(dest, &w.SecretSealed, &w.PrevSecretSealed, &w.PrevSecretNotAfter, &signed,
			&w.SigningKeySealed, &w.PublicKey, &w.DisabledAt, &w.DisabledReason, &w.Created, &w.Updated)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		w.Deleted, w.Enabled, w.Signed = deleted == 1, enabled == 1, signed == 1
		w.Events = make(map[string]bool, len(webhookEvents))
		for i, ev := range webhookEvents {
			if events[i] == 1 {
				w.Events[ev] = true
			}
		}
		w.PrevSecretNotAfter, w.DisabledAt = webhookTimeFrom(w.PrevSecretNotAfter), webhookTimeFrom(w.DisabledAt)
		w.Created, w.Updated = webhookTimeFrom(w.Created), webhookTimeFrom(w.Updated)
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
