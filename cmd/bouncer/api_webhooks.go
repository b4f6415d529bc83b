package main

import (
	"context"
	"errors"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
)

// webhookConfig is what apiStore needs to keep webhook subscriptions.
type webhookConfig struct {
	// keys seals secrets; nil: BOUNCER_SECRET_KEY is not set and the
	// webhook routes answer 503.
	keys *secrets.Keyring
	// guard checks subscription URLs and dials the test delivery.
	guard safedial.Guard
}

var _ api.WebhookStore = apiStore{}

func (a apiStore) WebhooksReady() error {
	if a.webhooks.keys == nil {
		return errNoSecretKey
	}
	return nil
}

func (a apiStore) WebhookGuard() safedial.Guard { return a.webhooks.guard }

func (a apiStore) opener() *webhookOpener { return &webhookOpener{keys: a.webhooks.keys} }

// open opens a row for the API; a row the key does not open is a 500 whose
// message says what to fix.
func (a apiStore) open(row clickhouse.Webhook) (api.Webhook, error) {
	w, err := a.opener().open(row)
	if errors.Is(err, secrets.ErrOpen) {
		return w, &api.Error{Code: api.EInternal, Message: "the signing secrets of webhook " + row.ID +
			" do not open with this server's " + secrets.EnvKey + ": start bouncer api with the key (or a keyring holding the key) they were sealed with"}
	}
	return w, err
}

func (a apiStore) Webhooks(ctx context.Context, account string) ([]api.Webhook, error) {
	rows, err := a.s.Webhooks(ctx, account)
	if err != nil {
		return nil, err
	}
	out := make([]api.Webhook, 0, len(rows))
	for _, row := range rows {
		w, err := a.open(row)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

func (a apiStore) Webhook(ctx context.Context, account, id string) (api.Webhook, bool, error) {
	row, ok, err := a.s.Webhook(ctx, account, id)
	if err != nil || !ok {
		return api.Webhook{}, false, err
	}
	w, err := a.open(row)
	return w, err == nil, err
}

func (a apiStore) PutWebhook(ctx context.Context, account string, w api.Webhook) error {
	if account == "" {
		return clickhouse.ErrNoAccount
	}
	row, err := a.opener().seal(account, w, nextWebhookVersion(w.Version, time.Now()))
	if err != nil {
		return err
	}
	return a.s.WriteWebhook(ctx, row)
}

// DeleteWebhook writes a tombstone, which keeps no secret.
func (a apiStore) DeleteWebhook(ctx context.Context, account string, w api.Webhook, at time.Time) error {
	if account == "" {
		return clickhouse.ErrNoAccount
	}
	return a.s.WriteWebhook(ctx, clickhouse.Webhook{
		AccountID: account, ID: w.ID, Version: nextWebhookVersion(w.Version, time.Now()), Deleted: true,
		Created: w.Created, Updated: at,
	})
}
