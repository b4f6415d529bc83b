package api

// Webhook subscriptions: SendGrid's Event Webhook settings under
// /v3/user/webhooks/event/... (paths, fields, status codes and scopes as
// SendGrid's specification has them) and bouncer's Standard Webhooks secret
// under /bouncer/v1/webhooks/{id}/secret.
//
// Contract:
//   - An account has at most MaxWebhooks subscriptions, each with its own
//     URL (two subscriptions of one account never share a URL, as in
//     SendGrid), also when creates and URL changes race, in one process or
//     several (the store decides: CreateWebhook, ChangeWebhookURL). URLs
//     are checked with the SSRF guard when they are set.
//   - Every subscription gets a Standard Webhooks secret when it is created;
//     rotating it keeps the old one signing for a grace period (default 24h).
//     SendGrid's Signed Event Webhook is off until turned on through
//     /settings/signed/{id}, which creates a P-256 key; turning it off
//     discards the key.
//   - Another account's id answers 404, exactly like an id that does not
//     exist.
//   - Without a key to seal secrets with (WebhooksReady) every route answers
//     503 saying what to set.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/google/uuid"
)

const (
	// MaxWebhooks is how many subscriptions one account may have; SendGrid
	// allows five (its max_allowed).
	MaxWebhooks = subscription.MaxPerAccount
	// MaxFriendlyName bounds a friendly name, in characters.
	MaxFriendlyName = 100
	// DefaultSecretGrace is how long a rotated-out secret keeps signing
	// unless the rotation asks otherwise; MaxSecretGrace bounds what it may
	// ask.
	DefaultSecretGrace = 24 * time.Hour
	MaxSecretGrace     = 7 * 24 * time.Hour
)

// WebhookStore keeps an account's webhook subscriptions, sealing their
// secrets at rest. Every method takes the authenticated account first and
// touches only that account's subscriptions.
type WebhookStore interface {
	// WebhooksReady returns why subscriptions cannot be kept (no key to
	// seal secrets with), or nil; its message is shown to callers.
	WebhooksReady() error
	// Webhooks returns the account's subscriptions, oldest first.
	Webhooks(ctx context.Context, account string) ([]subscription.Webhook, error)
	// Webhook returns one subscription; ok is false when the account has
	// none with that id.
	Webhook(ctx context.Context, account, id string) (w subscription.Webhook, ok bool, err error)
	// CreateWebhook stores the new subscription w unless the account has
	// MaxWebhooks subscriptions (subscription.ErrLimit) or one with w's URL
	// (*subscription.URLTakenError). The limits hold however many calls run
	// at once, in however many processes: of concurrent creates beyond the
	// limit, exactly the ones that fit are stored.
	CreateWebhook(ctx context.Context, account string, w subscription.Webhook) error
	// ChangeWebhookURL stores w, whose URL was oldURL when read, unless
	// another subscription of the account has w's URL
	// (*subscription.URLTakenError) or w no longer exists (ok false), under
	// the same guarantee as CreateWebhook.
	ChangeWebhookURL(ctx context.Context, account string, w subscription.Webhook, oldURL string) (ok bool, err error)
	// PutWebhook stores w as the newest version of its subscription, whose
	// URL it does not change. Secrets holds the current secret first and
	// at most one rotated-out secret after it.
	PutWebhook(ctx context.Context, account string, w subscription.Webhook) error
	// DeleteWebhook deletes the subscription w as read, as of at.
	DeleteWebhook(ctx context.Context, account string, w subscription.Webhook, at time.Time) error
	// WebhookGuard is the SSRF guard: it checks URLs when they are set and
	// dials the test delivery.
	WebhookGuard() safedial.Guard

	// SecurityPolicies returns the account's security policies, oldest
	// first, secrets opened.
	SecurityPolicies(ctx context.Context, account string) ([]subscription.Policy, error)
	// SecurityPolicy returns one; ok is false when the account has none
	// with that id.
	SecurityPolicy(ctx context.Context, account, id string) (p subscription.Policy, ok bool, err error)
	// CreateSecurityPolicy stores a new policy unless the account has
	// subscription.MaxPoliciesPerAccount (subscription.ErrPolicyLimit).
	CreateSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error
	// PutSecurityPolicy stores p as the newest version of its policy.
	PutSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error
	// DeleteSecurityPolicy deletes the policy p as read, as of at.
	DeleteSecurityPolicy(ctx context.Context, account string, p subscription.Policy, at time.Time) error
}

// webhookWriteError turns a store's limit answers into the API's errors.
func webhookWriteError(err error) error {
	var taken *subscription.URLTakenError
	switch {
	case errors.Is(err, subscription.ErrLimit):
		return errWebhookLimit
	case errors.As(err, &taken):
		return errorf(EInvalid, "url", "Webhook at '%s' already exists (id %s). Please provide a unique URL.", taken.URL, taken.ID)
	}
	return err
}

var errWebhookLimit = errorf(EInvalid, "", "You have reached the maximum number of webhooks (%d per account): delete one before creating another.", MaxWebhooks)

// WebhookTester sends one test delivery: signed with w's secrets and key
// (unsigned for a zero w), to url, through the SSRF guard. It returns the
// receiver's status, or the class of the failure when there was no
// answer; err only for a URL no request can be made of.
type WebhookTester interface {
	SendTest(ctx context.Context, w *subscription.Webhook, url string, body []byte, now time.Time) (status int, fail safedial.Failure, err error)
}

// Scopes of the webhook routes: SendGrid's names. Reading the Standard
// Webhooks secret needs the update scope, since the secret lets its holder
// forge deliveries; so does a test delivery signed with the secret to a URL
// other than the subscription's.
const (
	scopeWebhookCreate = "user.webhooks.event.settings.create"
	scopeWebhookRead   = "user.webhooks.event.settings.read"
	scopeWebhookUpdate = "user.webhooks.event.settings.update"
	scopeWebhookDelete = "user.webhooks.event.settings.delete"
	scopeWebhookTest   = "user.webhooks.event.test.create"
)

// webhookHandler answers one webhook route with the store it may use; it
// returns the error to answer with.
type webhookHandler func(w http.ResponseWriter, r *http.Request, st WebhookStore) error

// webhookRoute wraps a webhook handler: 404 when the server keeps no
// subscriptions, 503 when it cannot seal their secrets, errors in
// SendGrid's shape.
func (s *server) webhookRoute(h webhookHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.cfg.Webhooks
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "webhooks are not available on this server"))
			return
		}
		if err := st.WebhooksReady(); err != nil {
			writeError(w, s.log, r, errorf(EUnavailable, "", "%s", err.Error()))
			return
		}
		err := h(w, r, st)
		var sealErr *subscription.SealError
		if errors.As(err, &sealErr) {
			// Shown: the operator must restart with the right key.
			err = &Error{Code: EInternal, Message: sealErr.Error()}
		}
		if err != nil {
			writeError(w, s.log, r, err)
		}
	})
}

// webhookJSON is a subscription in SendGrid's shape, fields in SendGrid's
// order. Which optional fields appear depends on the route (see
// webhookView).
type webhookJSON struct {
	Enabled             bool    `json:"enabled"`
	URL                 string  `json:"url"`
	AccountStatusChange *bool   `json:"account_status_change,omitempty"`
	GroupResubscribe    bool    `json:"group_resubscribe"`
	Delivered           bool    `json:"delivered"`
	GroupUnsubscribe    bool    `json:"group_unsubscribe"`
	SpamReport          bool    `json:"spam_report"`
	Bounce              bool    `json:"bounce"`
	Deferred            bool    `json:"deferred"`
	Unsubscribe         bool    `json:"unsubscribe"`
	Processed           bool    `json:"processed"`
	Open                bool    `json:"open"`
	Click               bool    `json:"click"`
	Dropped             bool    `json:"dropped"`
	FriendlyName        *string `json:"friendly_name,omitempty"`
	ID                  string  `json:"id"`
	CreatedDate         *string `json:"created_date,omitempty"`
	UpdatedDate         *string `json:"updated_date,omitempty"`
	// OAuthClientID and OAuthTokenURL show a subscription's OAuth settings
	// (absent without OAuth); the client secret is never shown, as in
	// SendGrid.
	OAuthClientID *string `json:"oauth_client_id,omitempty"`
	OAuthTokenURL *string `json:"oauth_token_url,omitempty"`
	PublicKey     *string `json:"public_key,omitempty"`
	// SecurityPolicy is the id of the security policy the webhook uses
	// (bouncer's field; absent when none).
	SecurityPolicy *string `json:"security_policy,omitempty"`
	// BouncerFields is true when delivered events carry bouncer's own
	// fields (the "bouncer" object); absent when they do not.
	BouncerFields bool `json:"bouncer_fields,omitempty"`
}

// webhookView says which optional fields a route shows, as SendGrid's
// specification gives them: dates on create, update and list; the public key
// (of signed subscriptions only) on get and list; account_status_change when
// asked for with ?include=account_status_change (always false: bouncer has
// no account status events).
type webhookView struct{ dates, publicKey, accountStatus bool }

func webhookViewFor(r *http.Request, dates, publicKey bool) webhookView {
	v := webhookView{dates: dates, publicKey: publicKey}
	for _, inc := range strings.Split(r.URL.Query().Get("include"), ",") {
		if strings.TrimSpace(inc) == "account_status_change" {
			v.accountStatus = true
		}
	}
	return v
}

const webhookTimeFormat = "2006-01-02T15:04:05Z"

func webhookJSONOf(wh *subscription.Webhook, v webhookView) webhookJSON {
	ev := wh.Events
	out := webhookJSON{
		// A subscription delivery gave up on shows as disabled until the
		// customer enables it again.
		Enabled: wh.Active(), URL: wh.URL, ID: wh.ID,
		GroupResubscribe: ev["group_resubscribe"], Delivered: ev["delivered"], GroupUnsubscribe: ev["group_unsubscribe"],
		SpamReport: ev["spamreport"], Bounce: ev["bounce"], Deferred: ev["deferred"], Unsubscribe: ev["unsubscribe"],
		Processed: ev["processed"], Open: ev["open"], Click: ev["click"], Dropped: ev["dropped"],
	}
	if wh.FriendlyName != "" {
		name := wh.FriendlyName
		out.FriendlyName = &name
	}
	if v.accountStatus {
		no := false
		out.AccountStatusChange = &no
	}
	if v.dates {
		c, u := wh.Created.UTC().Format(webhookTimeFormat), wh.UpdatedAt.UTC().Format(webhookTimeFormat)
		out.CreatedDate, out.UpdatedDate = &c, &u
	}
	if wh.OAuth != nil {
		id, tokenURL := wh.OAuth.ClientID, wh.OAuth.TokenURL
		out.OAuthClientID, out.OAuthTokenURL = &id, &tokenURL
	}
	if v.publicKey && wh.SignedKey != nil && wh.PublicKey != "" {
		pk := wh.PublicKey
		out.PublicKey = &pk
	}
	if wh.SecurityPolicy != "" {
		sp := wh.SecurityPolicy
		out.SecurityPolicy = &sp
	}
	out.BouncerFields = wh.BouncerFields
	return out
}

// webhookBody is the body of create and update: every field optional
// (pointers tell absent from false), url required on create; other fields
// are refused.
type webhookBody struct {
	Enabled           *bool   `json:"enabled"`
	URL               *string `json:"url"`
	GroupResubscribe  *bool   `json:"group_resubscribe"`
	Delivered         *bool   `json:"delivered"`
	GroupUnsubscribe  *bool   `json:"group_unsubscribe"`
	SpamReport        *bool   `json:"spam_report"`
	Bounce            *bool   `json:"bounce"`
	Deferred          *bool   `json:"deferred"`
	Unsubscribe       *bool   `json:"unsubscribe"`
	Processed         *bool   `json:"processed"`
	Open              *bool   `json:"open"`
	Click             *bool   `json:"click"`
	Dropped           *bool   `json:"dropped"`
	FriendlyName      *string `json:"friendly_name"`
	OAuthClientID     *string `json:"oauth_client_id"`
	OAuthClientSecret *string `json:"oauth_client_secret"`
	OAuthTokenURL     *string `json:"oauth_token_url"`
	// SecurityPolicy names a security policy of the account the webhook
	// uses; "" stops using one.
	SecurityPolicy *string `json:"security_policy"`
	// BouncerFields opts in to bouncer's own fields in delivered bounces.
	BouncerFields *bool `json:"bouncer_fields"`

	// Fields of the responses, accepted and ignored, so that what a GET
	// answered can be sent back as a PATCH.
	ID                  json.RawMessage `json:"id"`
	CreatedDate         json.RawMessage `json:"created_date"`
	UpdatedDate         json.RawMessage `json:"updated_date"`
	PublicKey           json.RawMessage `json:"public_key"`
	AccountStatusChange json.RawMessage `json:"account_status_change"`
}

func (b *webhookBody) events() map[string]*bool {
	return map[string]*bool{
		"group_resubscribe": b.GroupResubscribe, "delivered": b.Delivered, "group_unsubscribe": b.GroupUnsubscribe,
		"spamreport": b.SpamReport, "bounce": b.Bounce, "deferred": b.Deferred, "unsubscribe": b.Unsubscribe,
		"processed": b.Processed, "open": b.Open, "click": b.Click, "dropped": b.Dropped,
	}
}

// apply checks the body and applies it to wh; others are the account's
// other subscriptions (for the unique-URL rule).
func (b *webhookBody) apply(ctx context.Context, wh *subscription.Webhook, others []subscription.Webhook, st WebhookStore) error {
	guard := st.WebhookGuard()
	oauth, err := applyOAuth(wh.OAuth, b.OAuthClientID, b.OAuthClientSecret, b.OAuthTokenURL, guard)
	if err != nil {
		return err
	}
	wh.OAuth = oauth
	if b.SecurityPolicy != nil {
		id := strings.ToLower(strings.TrimSpace(*b.SecurityPolicy))
		if id != "" {
			_, ok, err := st.SecurityPolicy(ctx, wh.AccountID, id)
			if err != nil {
				return err
			}
			if _, perr := uuid.Parse(id); perr != nil || len(id) != 36 || !ok {
				return errorf(EInvalid, "security_policy", "security_policy: this account has no security policy %q (GET /v3/user/webhooks/security/policies lists them)", truncateForError(id))
			}
		}
		wh.SecurityPolicy = id
	}
	if b.BouncerFields != nil {
		wh.BouncerFields = *b.BouncerFields
	}
	if b.URL != nil {
		u, err := checkWebhookURL(*b.URL, guard)
		if err != nil {
			return err
		}
		for _, o := range others {
			if o.ID != wh.ID && o.URL == u {
				return errorf(EInvalid, "url", "Webhook at '%s' already exists (id %s). Please provide a unique URL.", u, o.ID)
			}
		}
		wh.URL = u
	}
	if b.FriendlyName != nil {
		name := strings.TrimSpace(*b.FriendlyName)
		if n := utf8.RuneCountInString(name); n > MaxFriendlyName || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			return errorf(EInvalid, "friendly_name", "friendly_name must be at most %d printable characters", MaxFriendlyName)
		}
		wh.FriendlyName = name
	}
	if wh.Events == nil {
		wh.Events = map[string]bool{}
	}
	for event, v := range b.events() {
		if v != nil {
			if *v {
				wh.Events[event] = true
			} else {
				delete(wh.Events, event)
			}
		}
	}
	if b.Enabled != nil {
		wh.Enabled = *b.Enabled
		if *b.Enabled {
			// Enabling clears what delivery decided: it tries again.
			wh.DisabledAt, wh.DisabledReason = time.Time{}, ""
		}
	}
	return nil
}

// Bounds of the OAuth settings.
const (
	maxOAuthClientID = 256
	maxOAuthSecret   = 1024
)

// applyOAuth returns cur changed by the OAuth fields of a request (nil:
// absent, left as they are). As in SendGrid, the client secret is needed
// the first time and kept afterwards, so the client id and token URL can
// change without it; the client id and token URL go together; both empty
// turn OAuth off (and forget the secret). The token URL must pass the SSRF
// guard like a webhook URL.
func applyOAuth(cur *subscription.OAuth, clientID, secret, tokenURL *string, guard safedial.Guard) (*subscription.OAuth, error) {
	return applyOAuthFields(cur, clientID, secret, tokenURL, guard, oauthWebhookFields)
}

// oauthFields names the OAuth fields of a request body in its errors.
type oauthFields struct{ id, secret, url string }

var (
	oauthWebhookFields = oauthFields{"oauth_client_id", "oauth_client_secret", "oauth_token_url"}
	oauthPolicyFields  = oauthFields{"oauth.client_id", "oauth.client_secret", "oauth.token_url"}
)

func applyOAuthFields(cur *subscription.OAuth, clientID, secret, tokenURL *string, guard safedial.Guard, f oauthFields) (*subscription.OAuth, error) {
	if clientID == nil && secret == nil && tokenURL == nil {
		return cur, nil
	}
	next := subscription.OAuth{}
	if cur != nil {
		next = *cur
	}
	if clientID != nil {
		next.ClientID = strings.TrimSpace(*clientID)
	}
	if tokenURL != nil {
		next.TokenURL = strings.TrimSpace(*tokenURL)
	}
	if secret != nil {
		next.ClientSecret = *secret
	}
	if next.ClientID == "" && next.TokenURL == "" {
		if secret != nil && *secret != "" {
			return nil, errorf(EInvalid, f.secret, "%s needs %s and %s", f.secret, f.id, f.url)
		}
		return nil, nil // OAuth off
	}
	switch {
	case next.ClientID == "":
		return nil, errorf(EInvalid, f.id, "%s is required with %s (send both empty to turn OAuth off)", f.id, f.url)
	case next.TokenURL == "":
		return nil, errorf(EInvalid, f.url, "%s is required with %s: the URL bouncer asks for access tokens (send both empty to turn OAuth off)", f.url, f.id)
	case utf8.RuneCountInString(next.ClientID) > maxOAuthClientID || !utf8.ValidString(next.ClientID) || strings.IndexFunc(next.ClientID, unicode.IsControl) >= 0:
		return nil, errorf(EInvalid, f.id, "%s must be at most %d printable characters", f.id, maxOAuthClientID)
	case len(next.ClientSecret) > maxOAuthSecret || !utf8.ValidString(next.ClientSecret) || strings.IndexFunc(next.ClientSecret, unicode.IsControl) >= 0:
		return nil, errorf(EInvalid, f.secret, "%s must be at most %d bytes of printable characters", f.secret, maxOAuthSecret)
	case next.ClientSecret == "":
		return nil, errorf(EInvalid, f.secret, "%s is required the first time OAuth is set (bouncer keeps it: later updates may leave it out)", f.secret)
	}
	if next.TokenURL != "" && (cur == nil || next.TokenURL != cur.TokenURL) {
		if !utf8.ValidString(next.TokenURL) {
			return nil, errorf(EInvalid, f.url, "%s is not valid UTF-8", f.url)
		}
		if err := guard.ValidateURL(next.TokenURL); err != nil {
			return nil, errorf(EInvalid, f.url, "%v", err)
		}
	}
	return &next, nil
}

// checkWebhookURL trims a subscription URL and checks it with the SSRF
// guard: http or https, a well-formed host, no credentials or fragment, at
// most safedial.MaxURLLength, and no literal address of a blocked range
// (host names are checked on every dial).
func checkWebhookURL(raw string, guard safedial.Guard) (string, error) {
	u := strings.TrimSpace(raw)
	if u == "" {
		return "", errorf(EInvalid, "url", "url is required: the address bouncer POSTs events to, e.g. https://example.com/events")
	}
	if !utf8.ValidString(u) {
		return "", errorf(EInvalid, "url", "url is not valid UTF-8")
	}
	if err := guard.ValidateURL(u); err != nil {
		return "", errorf(EInvalid, "url", "%v", err)
	}
	return u, nil
}

// readWebhookBody reads a request body within the server's limit.
func readWebhookBody(r *http.Request) ([]byte, error) {
	raw, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(ETooLarge, "", "request body is larger than %d bytes", tooBig.Limit)
	} else if err != nil {
		return nil, errorf(EInvalid, "", "cannot read the request body")
	}
	return raw, nil
}

// decodeWebhookBody decodes a JSON object into v, refusing fields v does
// not have (a misspelt "spamreport" would otherwise be ignored in silence).
// An empty body is an error unless emptyOK, which leaves v as it is.
func decodeWebhookBody(r *http.Request, v any, emptyOK bool) error {
	raw, err := readWebhookBody(r)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 && emptyOK {
		return nil
	}
	if len(trimmed) > 0 && trimmed[0] != '{' {
		return errorf(EInvalid, "", "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name = strings.Trim(name, `"`)
			if len(name) > 64 || !utf8.ValidString(name) {
				name = "(unprintable)"
			}
			return errorf(EInvalid, name, "unknown field %q: see the request body schema in /v3/openapi.json", name)
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	return decodeBody(r, v)
}

// webhookID is the {id} of the path, lower-cased; ok is false when it is
// not a UUID (such an id answers 404 like one that does not exist).
func webhookID(r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if len(id) != 36 {
		return "", false
	}
	if _, err := uuid.Parse(id); err != nil {
		return "", false
	}
	return strings.ToLower(id), true
}

var errNoWebhook = errorf(ENotFound, "", "Invalid id provided.")

// loadByID returns what get finds for the path's {id} (a subscription or
// a security policy) in the request's account. An id that is no UUID, or
// that get does not find, is SendGrid's 404 "Invalid id provided.".
func loadByID[T any](r *http.Request, get func(ctx context.Context, account, id string) (T, bool, error)) (T, error) {
	var zero T
	id, ok := webhookID(r)
	if !ok {
		return zero, errNoWebhook
	}
	v, found, err := get(r.Context(), account(r), id)
	if err != nil {
		return zero, err
	}
	if !found {
		return zero, errNoWebhook
	}
	return v, nil
}

// handleWebhookCreate: POST /v3/user/webhooks/event/settings: 201 with the
// new subscription (enabled unless the body says otherwise; a Standard
// Webhooks secret is created with it).
func (s *server) handleWebhookCreate(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	var body webhookBody
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	if body.URL == nil {
		return errorf(EInvalid, "url", "url is required: the address bouncer POSTs events to, e.g. https://example.com/events")
	}
	acct := account(r)
	existing, err := st.Webhooks(r.Context(), acct)
	if err != nil {
		return err
	}
	if len(existing) >= MaxWebhooks {
		return errWebhookLimit
	}
	secret, err := sign.NewSecret()
	if err != nil {
		return err
	}
	// Time-ordered ids (UUIDv7; SendGrid's are time-based too) keep
	// subscriptions created in the same second in creation order.
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Second)
	wh := subscription.Webhook{
		ID: id.String(), AccountID: acct, Enabled: true, Events: map[string]bool{},
		Secrets: []sign.Secret{secret}, UpdatedAt: now,
		Created: now,
	}
	if err := body.apply(r.Context(), &wh, existing, st); err != nil {
		return err
	}
	// The checks above answer the common case with the right error; the
	// store decides concurrent creates (see CreateWebhook).
	if err := st.CreateWebhook(r.Context(), acct, wh); err != nil {
		return webhookWriteError(err)
	}
	writeJSON(w, http.StatusCreated, webhookJSONOf(&wh, webhookViewFor(r, true, false)))
	return nil
}

// handleWebhookList: GET /v3/user/webhooks/event/settings/all.
func (s *server) handleWebhookList(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	ws, err := st.Webhooks(r.Context(), account(r))
	if err != nil {
		return err
	}
	out := struct {
		MaxAllowed int           `json:"max_allowed"`
		Webhooks   []webhookJSON `json:"webhooks"`
	}{MaxAllowed: MaxWebhooks, Webhooks: []webhookJSON{}}
	v := webhookViewFor(r, true, true)
	for i := range ws {
		out.Webhooks = append(out.Webhooks, webhookJSONOf(&ws[i], v))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleWebhookGet: GET /v3/user/webhooks/event/settings/{id}; SendGrid
// shows no dates here.
func (s *server) handleWebhookGet(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookJSONOf(&wh, webhookViewFor(r, false, true)))
	return nil
}

// handleWebhookUpdate: PATCH /v3/user/webhooks/event/settings/{id}: the
// fields given change, the others stay. "enabled": true also re-enables a
// subscription delivery disabled.
func (s *server) handleWebhookUpdate(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	var body webhookBody
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	var others []subscription.Webhook
	if body.URL != nil {
		if others, err = st.Webhooks(r.Context(), account(r)); err != nil {
			return err
		}
	}
	oldURL := wh.URL
	if err := body.apply(r.Context(), &wh, others, st); err != nil {
		return err
	}
	wh.UpdatedAt = s.now().UTC().Truncate(time.Second)
	if wh.URL != oldURL {
		ok, err := st.ChangeWebhookURL(r.Context(), account(r), wh, oldURL)
		if err != nil {
			return webhookWriteError(err)
		}
		if !ok {
			return errNoWebhook
		}
	} else if err := st.PutWebhook(r.Context(), account(r), wh); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookJSONOf(&wh, webhookViewFor(r, true, false)))
	return nil
}

// handleWebhookDelete: DELETE /v3/user/webhooks/event/settings/{id}: 204.
func (s *server) handleWebhookDelete(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	if err := st.DeleteWebhook(r.Context(), account(r), wh, s.now().UTC()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type webhookSignedJSON struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
}

// handleWebhookSignedGet: GET /v3/user/webhooks/event/settings/signed/{id}:
// the public key, "" when signing is off.
func (s *server) handleWebhookSignedGet(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	out := webhookSignedJSON{ID: wh.ID}
	if wh.SignedKey != nil {
		out.PublicKey = wh.PublicKey
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleWebhookSignedSet: PATCH /v3/user/webhooks/event/settings/signed/{id}
// {"enabled": bool}: on creates a P-256 key (an existing one is kept), off
// discards it; answers with the public key ("" when off).
func (s *server) handleWebhookSignedSet(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	if body.Enabled == nil {
		return errorf(EInvalid, "enabled", "enabled is required: true turns signing on, false turns it off")
	}
	switch {
	case *body.Enabled && wh.SignedKey == nil:
		key, err := sign.NewSigningKey()
		if err != nil {
			return err
		}
		pk, err := sign.PublicKeyBase64(key)
		if err != nil {
			return err
		}
		wh.SignedKey, wh.PublicKey = key, pk
	case !*body.Enabled:
		wh.SignedKey, wh.PublicKey = nil, ""
	}
	wh.UpdatedAt = s.now().UTC().Truncate(time.Second)
	if err := st.PutWebhook(r.Context(), account(r), wh); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookSignedJSON{ID: wh.ID, PublicKey: wh.PublicKey})
	return nil
}

// webhookSecretJSON is the Standard Webhooks secret of a subscription.
type webhookSecretJSON struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// PreviousExpiresAt is when the secret before the last rotation stops
	// signing; null when none signs any more.
	PreviousExpiresAt *string `json:"previous_secret_expires_at"`
}

func webhookSecretView(wh *subscription.Webhook, now time.Time) (webhookSecretJSON, error) {
	if len(wh.Secrets) == 0 {
		return webhookSecretJSON{}, fmt.Errorf("webhook %s has no signing secret", wh.ID)
	}
	out := webhookSecretJSON{ID: wh.ID, Secret: sign.FormatSecret(wh.Secrets[0].Key)}
	for _, old := range wh.Secrets[1:] {
		if old.NotAfter.After(now) {
			at := old.NotAfter.UTC().Format(webhookTimeFormat)
			out.PreviousExpiresAt = &at
			break
		}
	}
	return out, nil
}

// handleWebhookSecret: GET /bouncer/v1/webhooks/{id}/secret.
func (s *server) handleWebhookSecret(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	out, err := webhookSecretView(&wh, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleWebhookRotate: POST /bouncer/v1/webhooks/{id}/secret/rotate with an
// optional body {"grace_period_seconds": n}: a new secret signs from now on;
// the current one keeps signing for the grace period (default 24h, 0 stops
// it at once). A secret rotated out earlier stops at once.
func (s *server) handleWebhookRotate(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	wh, err := loadByID(r, st.Webhook)
	if err != nil {
		return err
	}
	var body struct {
		Grace *int64 `json:"grace_period_seconds"`
	}
	if err := decodeWebhookBody(r, &body, true); err != nil {
		return err
	}
	grace := DefaultSecretGrace
	if body.Grace != nil {
		if *body.Grace < 0 || *body.Grace > int64(MaxSecretGrace/time.Second) {
			return errorf(EInvalid, "grace_period_seconds", "grace_period_seconds must be 0 to %d (7 days)", int64(MaxSecretGrace/time.Second))
		}
		grace = time.Duration(*body.Grace) * time.Second
	}
	next, err := sign.NewSecret()
	if err != nil {
		return err
	}
	now := s.now().UTC().Truncate(time.Second)
	// Only the newest rotated-out secret is kept (see PutWebhook).
	wh.Secrets = sign.Rotate(wh.Secrets[:min(1, len(wh.Secrets))], next, now, grace)
	wh.UpdatedAt = now
	if err := st.PutWebhook(r.Context(), account(r), wh); err != nil {
		return err
	}
	out, err := webhookSecretView(&wh, now)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleWebhookTest: POST /v3/user/webhooks/event/test {"id", "url"}: sends
// one batch of sample events (one per selected event type, every type
// without an id), signed like a real delivery with the subscription's
// secrets and key, to url (default: the subscription's) through the SSRF
// guard. A url other than the subscription's own needs the update scope
// as well (403 otherwise): that scope can read the secret, the test scope
// alone must not be a way to get its signatures sent anywhere. 204 when the receiver answered 2xx; 502 with the failure's class
// otherwise (the HTTP status, or refused, timeout, tls, dns, connection:
// never the receiver's body or an error text). Both carry the receiver's
// status, when it answered, in X-Bouncer-Receiver-Status. Without an id the batch is unsigned (there is
// no secret to sign with).
func (s *server) handleWebhookTest(w http.ResponseWriter, r *http.Request, st WebhookStore) error {
	var body struct {
		ID                *string `json:"id"`
		URL               *string `json:"url"`
		OAuthClientID     *string `json:"oauth_client_id"`
		OAuthClientSecret *string `json:"oauth_client_secret"`
		OAuthTokenURL     *string `json:"oauth_token_url"`
	}
	if err := decodeWebhookBody(r, &body, false); err != nil {
		return err
	}
	ep := subscription.Webhook{Events: map[string]bool{}}
	if body.ID != nil && *body.ID != "" {
		id := strings.ToLower(strings.TrimSpace(*body.ID))
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			return errNoWebhook
		}
		wh, ok, err := st.Webhook(r.Context(), account(r), id)
		if err != nil {
			return err
		}
		if !ok {
			return errNoWebhook
		}
		ep = wh
		if ep.SecurityPolicy != "" {
			// Tested as delivered: with the policy's OAuth and key.
			p, ok, err := st.SecurityPolicy(r.Context(), account(r), ep.SecurityPolicy)
			if err != nil {
				return err
			}
			if ok {
				p.Apply(&ep)
			}
		}
	}
	// OAuth as SendGrid tests it: the body's settings (the saved secret
	// when the body leaves it out), else the subscription's own.
	saved := ep.OAuth
	if body.OAuthClientID != nil || body.OAuthTokenURL != nil || body.OAuthClientSecret != nil {
		if saved != nil && (body.OAuthClientSecret == nil || *body.OAuthClientSecret == "") {
			// Only the saved secret is reused, never the saved id or URL:
			// the test is of what the body says.
			saved = &subscription.OAuth{ClientSecret: saved.ClientSecret}
		} else {
			saved = nil
		}
		oauth, err := applyOAuth(saved, body.OAuthClientID, body.OAuthClientSecret, body.OAuthTokenURL, st.WebhookGuard())
		if err != nil {
			return err
		}
		ep.OAuth = oauth
	}
	target := ep.URL
	if body.URL != nil && strings.TrimSpace(*body.URL) != "" {
		target = *body.URL
	}
	guard := st.WebhookGuard()
	target, err := checkWebhookURL(target, guard)
	if err != nil {
		return err
	}
	if ep.ID != "" && target != ep.URL && !hasScope(r, scopeWebhookUpdate) {
		// Signed with the subscription's secrets, a batch sent anywhere
		// would hand those signatures to whoever runs the URL: that takes
		// the scope that can read the secret itself.
		return errorf(EForbidden, "url", "a test signed with this webhook's secrets goes only to its own URL unless the key has the scope %s (which can read the secret); leave out url to test the webhook's URL, or leave out id for an unsigned test to any URL", scopeWebhookUpdate)
	}
	now := s.now()
	batch, err := webhookSampleEvents(&ep, now)
	if err != nil {
		return err
	}
	tester := s.cfg.WebhookTester
	if tester == nil {
		return errorf(EUnavailable, "", "test deliveries are not available on this server")
	}
	status, fail, err := tester.SendTest(r.Context(), &ep, target, batch, now)
	var tokenErr *webhook.TokenError
	if errors.As(err, &tokenErr) {
		s.log.Debug("webhook test: OAuth token request failed", "account", account(r), "err", errors.Unwrap(tokenErr))
		return errorf(EBadGateway, "oauth_token_url", "test delivery to %s not sent: %s", target, tokenErr.Error())
	}
	if err != nil {
		return errorf(EInvalid, "url", "'%s' is not a valid url", target)
	}
	if fail != "" {
		s.log.Debug("webhook test delivery failed", "account", account(r), "class", fail)
		if fail == safedial.FailBlocked {
			return errorf(EInvalid, "url", "%s: %s", target, fail.Message())
		}
		return errorf(EBadGateway, "", "test delivery to %s failed: %s", target, fail.Message())
	}
	w.Header().Set("X-Bouncer-Receiver-Status", fmt.Sprint(status))
	if status < 200 || status > 299 {
		return errorf(EBadGateway, "", "test delivery to %s failed: the receiver answered %s (want a 2xx status)", target, webhook.StatusResponse(status))
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// webhookSampleEvents is the test batch: one made-up event per event type ep
// selects (every type when it selects none), in SendGrid's event format.
func webhookSampleEvents(ep *subscription.Webhook, now time.Time) ([]byte, error) {
	var events []map[string]any
	ts := now.Unix()
	msgID := "bouncer-test." + webhookToken(8)
	for _, name := range subscription.EventTypes {
		if len(ep.Events) > 0 && !ep.Events[name] {
			continue
		}
		e := map[string]any{
			"email": "example@test.com", "timestamp": ts, "event": name,
			"sg_event_id": webhookToken(16), "sg_message_id": msgID,
			"smtp-id": "<" + msgID + "@bouncer.test>", "category": []string{"bouncer-test"},
		}
		switch name {
		case "bounce":
			e["type"], e["status"], e["reason"] = "bounce", "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist."
			e["bounce_classification"] = "Invalid Address"
		case "deferred":
			e["response"], e["attempt"] = "421 4.7.0 Try again later", "1"
		case "delivered":
			e["response"] = "250 2.0.0 OK"
		case "dropped":
			e["reason"] = "Bounced Address"
		case "open", "click":
			e["useragent"], e["ip"] = "Mozilla/5.0 (bouncer test)", "192.0.2.1"
			if name == "click" {
				e["url"] = "https://example.com/"
			}
		case "group_unsubscribe", "group_resubscribe":
			e["asm_group_id"] = 1
		}
		events = append(events, e)
	}
	// SendGrid sends "<" and ">" of smtp-id as they are, not as \u003c.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(events); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func webhookToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// truncateForError shortens a caller's value quoted in an error.
func truncateForError(v string) string {
	if len(v) > 64 || !utf8.ValidString(v) {
		return "(too long or not UTF-8)"
	}
	return v
}
