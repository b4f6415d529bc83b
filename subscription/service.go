package subscription

import (
	"context"
	"errors"
	"time"

	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
)

// Service keeps an account's subscriptions for the API: it seals secrets
// on every write and opens them on every read, versions each write above
// the one it read (NextVersion), and reads delivery's log and failed
// batches. Every method takes the account first and touches only that
// account's subscriptions. It implements api.WebhookStore and
// api.WebhookOps.
type Service struct {
	store  Store
	keys   *secrets.Keyring
	guard  safedial.Guard
	replay Replayer
	now    func() time.Time
	// claims decides the per-account limits across processes (UseClaims);
	// nil: under a lock of this process.
	claims ClaimLog
}

// Replayer sends failed batches again (sinks/webhook implements it).
type Replayer interface {
	// ReplayWebhookBatches replays the failed batch named webhookID, or
	// (webhookID "") every batch of the endpoint failed since since;
	// ErrNoFailedBatch when webhookID names none.
	ReplayWebhookBatches(ctx context.Context, account, id, webhookID string, since time.Time) ([]Replay, error)
}

// NewService returns the API's subscriptions over store. keys seals
// secrets; nil: BOUNCER_SECRET_KEY is not set, and WebhooksReady says so.
// guard checks subscription URLs. replay may be nil (replays then fail).
func NewService(store Store, keys *secrets.Keyring, guard safedial.Guard, replay Replayer) *Service {
	return &Service{store: store, keys: keys, guard: guard, replay: replay, now: time.Now}
}

// WebhooksReady returns ErrNoKey without a keyring, else nil.
func (s *Service) WebhooksReady() error {
	if s.keys == nil {
		return ErrNoKey
	}
	return nil
}

// WebhookGuard is the SSRF guard subscription URLs must pass.
func (s *Service) WebhookGuard() safedial.Guard { return s.guard }

// SealError is a subscription whose secrets do not open with this
// server's keyring; its message says what to fix.
type SealError struct {
	ID  string
	Err error
}

func (e *SealError) Error() string {
	return "the signing secrets of webhook " + e.ID + " do not open with this server's " + secrets.EnvKey +
		": start bouncer api with the key (or a keyring holding the key) they were sealed with"
}

func (e *SealError) Unwrap() error { return e.Err }

func (s *Service) open(row Sealed) (Webhook, error) {
	w, err := NewSealer(s.keys).Open(row)
	if errors.Is(err, secrets.ErrOpen) {
		return w, &SealError{ID: row.ID, Err: err}
	}
	return w, err
}

// Webhooks returns the account's subscriptions, oldest first.
func (s *Service) Webhooks(ctx context.Context, account string) ([]Webhook, error) {
	rows, err := s.store.Webhooks(ctx, account)
	if err != nil {
		return nil, err
	}
	out := make([]Webhook, 0, len(rows))
	for _, row := range rows {
		w, err := s.open(row)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Webhook returns one subscription of the account; ok is false when it
// has none with that id.
func (s *Service) Webhook(ctx context.Context, account, id string) (Webhook, bool, error) {
	row, ok, err := s.store.Webhook(ctx, account, id)
	if err != nil || !ok {
		return Webhook{}, false, err
	}
	w, err := s.open(row)
	return w, err == nil, err
}

// PutWebhook stores w as the newest version of its subscription, whose URL
// it does not change (ChangeWebhookURL does).
func (s *Service) PutWebhook(ctx context.Context, account string, w Webhook) error {
	if account == "" {
		return ErrNoAccount
	}
	row, err := NewSealer(s.keys).Seal(account, w, NextVersion(w.Version, s.now()))
	if err != nil {
		return err
	}
	return s.store.WriteWebhooks(ctx, []Sealed{row})
}

// DeleteWebhook writes a tombstone of w as read, which keeps no secret,
// after claiming the delete (see CreateWebhook): a slot frees in the same
// order every process sees.
func (s *Service) DeleteWebhook(ctx context.Context, account string, w Webhook, at time.Time) error {
	if account == "" {
		return ErrNoAccount
	}
	var row Sealed
	row.AccountID, row.ID, row.Version, row.Deleted = account, w.ID, NextVersion(w.Version, s.now()), true
	row.Created, row.UpdatedAt = w.Created, at
	_, err := s.claim(ctx, claims.Claim{Op: claims.OpDelete, Account: account, ID: w.ID, Version: row.Version}, row)
	return err
}

// WebhookState returns the subscription (without its secrets, so it needs
// no keyring) and its delivery state; ok is false when the account has no
// such subscription.
func (s *Service) WebhookState(ctx context.Context, account, id string) (Webhook, DeliveryState, bool, error) {
	row, ok, err := s.store.Webhook(ctx, account, id)
	if err != nil || !ok || row.Deleted {
		return Webhook{}, DeliveryState{}, false, err
	}
	ds, err := s.store.EndpointDeliveryState(ctx, account, id)
	if err != nil {
		return Webhook{}, DeliveryState{}, false, err
	}
	w := row.Webhook
	w.Secrets, w.SignedKey, w.OAuth = nil, nil, row.oauthWithoutSecret()
	return w, ds, true, nil
}

// WebhookDeliveries returns the endpoint's newest delivery log rows.
func (s *Service) WebhookDeliveries(ctx context.Context, account, id string, limit int) ([]Delivery, error) {
	return s.store.EndpointDeliveries(ctx, account, id, limit)
}

// FailedWebhookBatches lists the batches delivery gave up on since a time,
// oldest first.
func (s *Service) FailedWebhookBatches(ctx context.Context, account, id string, since time.Time, limit int) ([]FailedBatch, error) {
	return s.store.FailedBatches(ctx, account, id, since, limit)
}

// ReplayWebhookBatches sends failed batches again (see Replayer).
func (s *Service) ReplayWebhookBatches(ctx context.Context, account, id, webhookID string, since time.Time) ([]Replay, error) {
	if s.replay == nil {
		return nil, errors.New("replay is not configured on this server")
	}
	return s.replay.ReplayWebhookBatches(ctx, account, id, webhookID, since)
}
