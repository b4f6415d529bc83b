package api

// Webhook delivery operations: endpoint state, the delivery log, failed
// batches and their replay, under /bouncer/v1/webhooks. Delivery runs in
// the workers; what these routes show comes from ClickHouse (the delivery
// log and the failed batches), so it is as fresh as the workers' last log
// flush (about a second).

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

// WebhookOps reads delivery state and replays failed batches. Every method
// is scoped to an account: another account's endpoint is unknown.
type WebhookOps interface {
	// WebhookState returns a subscription (its secrets need not be opened)
	// and its delivery state; ok is false when the account has no such
	// subscription.
	WebhookState(ctx context.Context, account, id string) (w subscription.Webhook, ds subscription.DeliveryState, ok bool, err error)
	// WebhookDeliveries returns the newest delivery log rows, newest first.
	WebhookDeliveries(ctx context.Context, account, id string, limit int) ([]subscription.Delivery, error)
	// FailedWebhookBatches lists batches delivery gave up on since a
	// time, oldest first.
	FailedWebhookBatches(ctx context.Context, account, id string, since time.Time, limit int) ([]subscription.FailedBatch, error)
	// ReplayWebhookBatches sends failed batches again, through the first
	// retry tier: the one named webhookID, or (webhookID "") every batch
	// failed since since. It returns the webhook-ids the replays go out
	// under; subscription.ErrNoFailedBatch when webhookID names none.
	ReplayWebhookBatches(ctx context.Context, account, id, webhookID string, since time.Time) ([]subscription.Replay, error)
}

// webhookStateJSON is an endpoint as delivery sees it.
type webhookStateJSON struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// State is "active", "disabled" (by delivery: 410 or failing too
	// long; DisabledReason says which) or "off" (the customer's switch).
	State          string `json:"state"`
	Enabled        bool   `json:"enabled"`
	DisabledAt     int64  `json:"disabled_at"`
	DisabledReason string `json:"disabled_reason"`
	// Circuit is the breaker state a worker last logged: closed, open,
	// half-open, or "" before any delivery.
	Circuit string `json:"circuit"`
	// LastSuccess, LastFailure and LastActivity are unix seconds, 0 when
	// never.
	LastSuccess  int64 `json:"last_success"`
	LastFailure  int64 `json:"last_failure"`
	LastActivity int64 `json:"last_activity"`
	// OAuth is present for subscriptions that use OAuth.
	OAuth *webhookOAuthStateJSON `json:"oauth,omitempty"`
}

// webhookOAuthStateJSON says whether delivery gets access tokens.
type webhookOAuthStateJSON struct {
	ClientID string `json:"client_id"`
	TokenURL string `json:"token_url"`
	// State is "failing" when the latest token request failed after the
	// last success (Error says how: wrong credentials, the token
	// endpoint's status, or a failure class), else "ok".
	State string `json:"state"`
	// Error and FailedAt (unix seconds) are the latest failed token
	// request, also after it recovered; "" and 0 when none.
	Error    string `json:"error"`
	FailedAt int64  `json:"failed_at"`
}

func stateJSON(w *subscription.Webhook, ds subscription.DeliveryState) webhookStateJSON {
	out := webhookStateJSON{ID: w.ID, URL: w.URL, Enabled: w.Enabled, State: w.State(), DisabledAt: unixOrZero(w.DisabledAt),
		DisabledReason: w.DisabledReason, Circuit: ds.Circuit, LastSuccess: unixOrZero(ds.LastSuccess),
		LastFailure: unixOrZero(ds.LastFailure), LastActivity: unixOrZero(ds.LastActivity)}
	if w.OAuth != nil {
		o := &webhookOAuthStateJSON{ClientID: w.OAuth.ClientID, TokenURL: w.OAuth.TokenURL, State: "ok",
			Error: ds.LastOAuthError, FailedAt: unixOrZero(ds.LastOAuthFailure)}
		if ds.OAuthFailing() {
			o.State = "failing"
		}
		out.OAuth = o
	}
	return out
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// deliveryJSON is one delivery log row.
type deliveryJSON struct {
	At         int64  `json:"at"`
	WebhookID  string `json:"webhook_id"`
	Attempt    int    `json:"attempt"`
	Result     string `json:"result"`
	Status     int    `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Response   string `json:"response"`
	Events     int    `json:"events"`
	Circuit    string `json:"circuit"`
}

// failedBatchJSON is a batch delivery gave up on.
type failedBatchJSON struct {
	WebhookID  string `json:"webhook_id"`
	FailedAt   int64  `json:"failed_at"`
	Attempts   int    `json:"attempts"`
	Reason     string `json:"reason"`
	LastStatus int    `json:"last_status"`
	LastError  string `json:"last_error"`
	Events     int    `json:"events"`
	// ReplayedAt is the last replay (0: never) and ReplayID the
	// webhook-id it went out under.
	ReplayedAt int64  `json:"replayed_at"`
	ReplayID   string `json:"replay_id"`
}

const (
	maxFailedList   = 500
	maxDeliveryList = 500
	// maxReplay bounds one replay-since request; repeat with a later
	// since for more.
	maxReplay = 1000
)

// opsHandler answers one route with the endpoint's subscription and
// delivery state.
type opsHandler func(w http.ResponseWriter, r *http.Request, ops WebhookOps, wh *subscription.Webhook, ds subscription.DeliveryState) error

// opsRoute answers 404 when the server has no delivery state or the
// account has no such endpoint, and errors in SendGrid's shape.
func (s *server) opsRoute(h opsHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ops := s.cfg.WebhookOps
		if ops == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "webhook delivery state is not available on this server"))
			return
		}
		wh, ds, ok, err := ops.WebhookState(r.Context(), account(r), r.PathValue("id"))
		if err == nil && !ok {
			err = errorf(ENotFound, "id", "no webhook with this id")
		}
		if err == nil {
			err = h(w, r, ops, &wh, ds)
		}
		if err != nil {
			writeError(w, s.log, r, err)
		}
	})
}

// handleWebhookState: GET /bouncer/v1/webhooks/{id}/state.
func (s *server) handleWebhookState(w http.ResponseWriter, r *http.Request, _ WebhookOps, wh *subscription.Webhook, ds subscription.DeliveryState) error {
	writeJSON(w, http.StatusOK, stateJSON(wh, ds))
	return nil
}

// handleWebhookDeliveries: GET /bouncer/v1/webhooks/{id}/deliveries?limit=.
func (s *server) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request, ops WebhookOps, st *subscription.Webhook, _ subscription.DeliveryState) error {
	limit, err := opsLimit(r, 50, maxDeliveryList)
	if err != nil {
		return err
	}
	rows, err := ops.WebhookDeliveries(r.Context(), account(r), st.ID, limit)
	if err != nil {
		return err
	}
	out := make([]deliveryJSON, len(rows))
	for i, d := range rows {
		out[i] = deliveryJSON{At: d.At.Unix(), WebhookID: d.WebhookID, Attempt: d.Attempt, Result: d.Result, Status: d.Status,
			DurationMS: d.Duration.Milliseconds(), Response: d.Response, Events: d.Events, Circuit: d.Circuit}
	}
	writeJSON(w, http.StatusOK, map[string][]deliveryJSON{"result": out})
	return nil
}

// handleFailedBatches: GET /bouncer/v1/webhooks/{id}/failed?since=&limit=.
func (s *server) handleFailedBatches(w http.ResponseWriter, r *http.Request, ops WebhookOps, st *subscription.Webhook, _ subscription.DeliveryState) error {
	limit, err := opsLimit(r, 100, maxFailedList)
	if err != nil {
		return err
	}
	since, err := opsSince(r.URL.Query().Get("since"), "since")
	if err != nil {
		return err
	}
	rows, err := ops.FailedWebhookBatches(r.Context(), account(r), st.ID, since, limit)
	if err != nil {
		return err
	}
	out := make([]failedBatchJSON, len(rows))
	for i, b := range rows {
		out[i] = failedBatchJSON{WebhookID: b.WebhookID, FailedAt: b.FailedAt.Unix(), Attempts: b.Attempts, Reason: b.Reason,
			LastStatus: b.LastStatus, LastError: b.LastError, Events: b.Events, ReplayedAt: unixOrZero(b.ReplayedAt), ReplayID: b.ReplayID}
	}
	writeJSON(w, http.StatusOK, map[string][]failedBatchJSON{"result": out})
	return nil
}

// handleReplayOne: POST /bouncer/v1/webhooks/{id}/failed/{webhook_id}/replay.
func (s *server) handleReplayOne(w http.ResponseWriter, r *http.Request, ops WebhookOps, st *subscription.Webhook, _ subscription.DeliveryState) error {
	id := r.PathValue("webhook_id")
	if id == "" {
		return errorf(EInvalid, "webhook_id", "webhook_id is required")
	}
	replays, err := ops.ReplayWebhookBatches(r.Context(), account(r), st.ID, id, time.Time{})
	if errors.Is(err, subscription.ErrNoFailedBatch) {
		return errorf(ENotFound, "webhook_id", "no failed batch with this webhook_id for this webhook")
	}
	if err != nil {
		return err
	}
	writeReplays(w, replays)
	return nil
}

// handleReplaySince: POST /bouncer/v1/webhooks/{id}/replay {"since": unix}.
func (s *server) handleReplaySince(w http.ResponseWriter, r *http.Request, ops WebhookOps, st *subscription.Webhook, _ subscription.DeliveryState) error {
	var body struct {
		Since *int64 `json:"since"`
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Since == nil {
		return errorf(EInvalid, "since", "since is required: unix seconds; every batch that failed since then is replayed")
	}
	if *body.Since < 0 {
		return errorf(EInvalid, "since", "since must be unix seconds, 0 or more")
	}
	replays, err := ops.ReplayWebhookBatches(r.Context(), account(r), st.ID, "", time.Unix(*body.Since, 0))
	if err != nil {
		return err
	}
	writeReplays(w, replays)
	return nil
}

func writeReplays(w http.ResponseWriter, replays []subscription.Replay) {
	if replays == nil {
		replays = []subscription.Replay{}
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"replayed": len(replays), "result": replays})
}

func opsLimit(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, errorf(EInvalid, "limit", "limit must be an integer from 1 to %d", most)
	}
	return n, nil
}

func opsSince(v, field string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, errorf(EInvalid, field, "%s must be unix seconds, 0 or more", field)
	}
	return time.Unix(n, 0), nil
}
