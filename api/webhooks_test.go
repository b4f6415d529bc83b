package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/subscription/storetest"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// fakeWebhooks keeps subscriptions in memory, per account; what the
// ClickHouse store does (sealing, versions, tenancy in SQL) is tested in
// cmd/bouncer.
type fakeWebhooks struct {
	mu       sync.Mutex
	byAcct   map[string][]subscription.Webhook
	policies map[string][]subscription.Policy
	notReady error
	guard    safedial.Guard
}

// guardedTester sends test deliveries with sinks/webhook's Tester through
// the fake store's guard as it is when the test is sent (tests open it for
// their receivers after the server is made), on clock (nil: the real one).
type guardedTester struct {
	st    *fakeWebhooks
	clock clockwork.Clock
}

func (g guardedTester) SendTest(ctx context.Context, w *subscription.Webhook, url string, body []byte, now time.Time) (int, safedial.Failure, error) {
	return webhook.Tester{Guard: g.st.WebhookGuard(), Clock: g.clock}.SendTest(ctx, w, url, body, now)
}

func newFakeWebhooks() *fakeWebhooks {
	return &fakeWebhooks{byAcct: map[string][]subscription.Webhook{}, policies: map[string][]subscription.Policy{}}
}

func (f *fakeWebhooks) SecurityPolicies(ctx context.Context, account string) ([]subscription.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]subscription.Policy(nil), f.policies[account]...), nil
}

func (f *fakeWebhooks) SecurityPolicy(ctx context.Context, account, id string) (subscription.Policy, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.policies[account] {
		if p.ID == id {
			return p, true, nil
		}
	}
	return subscription.Policy{}, false, nil
}

func (f *fakeWebhooks) CreateSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.policies[account]) >= subscription.MaxPoliciesPerAccount {
		return subscription.ErrPolicyLimit
	}
	p.Version++ // every write makes a newer version, as the Service does
	f.policies[account] = append(f.policies[account], p)
	return nil
}

func (f *fakeWebhooks) PutSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p.Version++
	for i := range f.policies[account] {
		if f.policies[account][i].ID == p.ID {
			f.policies[account][i] = p
			return nil
		}
	}
	f.policies[account] = append(f.policies[account], p)
	return nil
}

func (f *fakeWebhooks) DeleteSecurityPolicy(ctx context.Context, account string, p subscription.Policy, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies[account] = slices.DeleteFunc(f.policies[account], func(x subscription.Policy) bool { return x.ID == p.ID })
	return nil
}

// allow opens a test server's loopback address and port (only that port:
// the allow-list names ports).
func (f *fakeWebhooks) allow(srv *httptest.Server) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.guard.Allow = append(f.guard.Allow, safedial.RuleFor(netip.MustParseAddrPort(srv.Listener.Addr().String())))
}

func (f *fakeWebhooks) WebhooksReady() error { return f.notReady }
func (f *fakeWebhooks) WebhookGuard() safedial.Guard {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.guard
}

func (f *fakeWebhooks) Webhooks(ctx context.Context, account string) ([]subscription.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]subscription.Webhook(nil), f.byAcct[account]...), nil
}

func (f *fakeWebhooks) Webhook(ctx context.Context, account, id string) (subscription.Webhook, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.byAcct[account] {
		if w.ID == id {
			return w, true, nil
		}
	}
	return subscription.Webhook{}, false, nil
}

func (f *fakeWebhooks) PutWebhook(ctx context.Context, account string, w subscription.Webhook) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Version++
	ws := f.byAcct[account]
	for i := range ws {
		if ws[i].ID == w.ID {
			ws[i] = w
			return nil
		}
	}
	f.byAcct[account] = append(ws, w)
	return nil
}

// CreateWebhook keeps the limits under its lock (the ClickHouse store
// keeps them across processes; see cmd/bouncer).
func (f *fakeWebhooks) CreateWebhook(ctx context.Context, account string, w subscription.Webhook) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.byAcct[account]
	if len(ws) >= MaxWebhooks {
		return subscription.ErrLimit
	}
	for _, o := range ws {
		if o.URL == w.URL {
			return &subscription.URLTakenError{URL: w.URL, ID: o.ID}
		}
	}
	w.Version++
	f.byAcct[account] = append(ws, w)
	return nil
}

func (f *fakeWebhooks) ChangeWebhookURL(ctx context.Context, account string, w subscription.Webhook, oldURL string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ws := f.byAcct[account]
	at := -1
	for i, o := range ws {
		if o.ID == w.ID {
			at = i
		} else if o.URL == w.URL {
			return false, &subscription.URLTakenError{URL: w.URL, ID: o.ID}
		}
	}
	if at < 0 {
		return false, nil
	}
	w.Version++
	ws[at] = w
	return true, nil
}

func (f *fakeWebhooks) DeleteWebhook(ctx context.Context, account string, w subscription.Webhook, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byAcct[account] = slices.DeleteFunc(f.byAcct[account], func(x subscription.Webhook) bool { return x.ID == w.ID })
	return nil
}

// TestFakeWebhooksConformance: the fake webhook store of these tests keeps
// the contract the ClickHouse store keeps (subscription/storetest; the
// subscription package runs the same suite on ClickHouse).
func TestFakeWebhooksConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return newFakeWebhooks() })
}

// webhookServer is a server with a fake webhook store, keys for accounts
// acme and globex, and a fixed clock.
func webhookServer(t *testing.T) (h http.Handler, st *fakeWebhooks, keyA, keyB string, now time.Time) {
	t.Helper()
	keyA, ka := testKey(t, "acme", false)
	keyB, kb := testKey(t, "globex", false)
	st = newFakeWebhooks()
	now = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{ka, kb}, Webhooks: st, WebhookTester: guardedTester{st: st}, Now: func() time.Time { return now },
		RateLimit: 10000, MaxBodyBytes: 4096})
	return h, st, keyA, keyB, now
}

// decodeExact decodes body into a map and checks it has exactly keys.
func decodeExact(t *testing.T, body string, keys ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(keys)
	if !slices.Equal(got, keys) {
		t.Errorf("keys %v\nwant %v\nbody %s", got, keys, body)
	}
	return m
}

var webhookEventJSONKeys = []string{"group_resubscribe", "delivered", "group_unsubscribe", "spam_report", "bounce", "deferred",
	"unsubscribe", "processed", "open", "click", "dropped"}

func webhookKeys(extra ...string) []string {
	return append(append([]string{"enabled", "url", "id"}, webhookEventJSONKeys...), extra...)
}

// TestWebhookLifecycleShapes walks one subscription through every route
// and checks each answer's fields against SendGrid's shapes.
func TestWebhookLifecycleShapes(t *testing.T) {
	h, st, key, _, now := webhookServer(t)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key,
		`{"url":"https://hooks.example.com/sg","spam_report":true,"bounce":true,"dropped":false,"friendly_name":"Engagement"}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	created := decodeExact(t, rec.Body.String(), webhookKeys("friendly_name", "created_date", "updated_date")...)
	id, _ := created["id"].(string)
	if created["enabled"] != true || created["spam_report"] != true || created["bounce"] != true || created["open"] != false ||
		created["created_date"] != "2026-11-27T06:00:00Z" || created["url"] != "https://hooks.example.com/sg" || len(id) != 36 {
		t.Errorf("created: %s", rec.Body)
	}
	stored, _, _ := st.Webhook(context.Background(), "acme", id)
	if !reflect.DeepEqual(stored.Events, map[string]bool{"spamreport": true, "bounce": true}) || len(stored.Secrets) != 1 || stored.SignedKey != nil {
		t.Errorf("stored: events %v, %d secrets, key %v; want spamreport and bounce, one secret, no key", stored.Events, len(stored.Secrets), stored.SignedKey)
	}

	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id, key, "")
	decodeExact(t, rec.Body.String(), webhookKeys("friendly_name")...) // SendGrid shows no dates here
	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id+"?include=account_status_change", key, "")
	if m := decodeExact(t, rec.Body.String(), webhookKeys("friendly_name", "account_status_change")...); m["account_status_change"] != false {
		t.Errorf("include=account_status_change: %s", rec.Body)
	}

	// PATCH changes what it names and keeps the rest.
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"open":true,"bounce":false,"enabled":false}`)
	if rec.Code != 200 {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	m := decodeExact(t, rec.Body.String(), webhookKeys("friendly_name", "created_date", "updated_date")...)
	if m["open"] != true || m["bounce"] != false || m["spam_report"] != true || m["enabled"] != false || m["friendly_name"] != "Engagement" {
		t.Errorf("after patch: %s", rec.Body)
	}

	// Signing: off at first, on makes a key, the public key verifies.
	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/signed/"+id, key, "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"id":"`+id+`","public_key":""}` {
		t.Errorf("signed before: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/signed/"+id, key, `{"enabled":true}`)
	var pk webhookSignedJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &pk); err != nil || rec.Code != 200 || pk.ID != id || pk.PublicKey == "" {
		t.Fatalf("signed on: %d %s", rec.Code, rec.Body)
	}
	if _, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(pk.PublicKey); err != nil {
		t.Errorf("public key %q does not parse with sendgrid-go: %v", pk.PublicKey, err)
	}
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/signed/"+id, key, `{"enabled":true}`)
	if !strings.Contains(rec.Body.String(), pk.PublicKey) {
		t.Errorf("turning signing on twice changed the key: %s", rec.Body)
	}
	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id, key, "")
	if m := decodeExact(t, rec.Body.String(), webhookKeys("friendly_name", "public_key")...); m["public_key"] != pk.PublicKey {
		t.Errorf("get with signing on: %s", rec.Body)
	}
	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/all", key, "")
	var all struct {
		MaxAllowed int              `json:"max_allowed"`
		Webhooks   []map[string]any `json:"webhooks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &all); err != nil || all.MaxAllowed != MaxWebhooks || len(all.Webhooks) != 1 ||
		all.Webhooks[0]["public_key"] != pk.PublicKey || all.Webhooks[0]["created_date"] == nil {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/signed/"+id, key, `{"enabled":false}`)
	if strings.TrimSpace(rec.Body.String()) != `{"id":"`+id+`","public_key":""}` {
		t.Errorf("signed off: %s", rec.Body)
	}
	if stored, _, _ := st.Webhook(context.Background(), "acme", id); stored.SignedKey != nil {
		t.Error("signing off kept the private key")
	}

	// The Standard Webhooks secret, and its rotation.
	rec = do(t, h, "GET", "/bouncer/v1/webhooks/"+id+"/secret", key, "")
	var sec webhookSecretJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &sec); err != nil || rec.Code != 200 || !strings.HasPrefix(sec.Secret, "whsec_") || sec.PreviousExpiresAt != nil {
		t.Fatalf("secret: %d %s", rec.Code, rec.Body)
	}
	if raw, err := sign.ParseSecret(sec.Secret); err != nil || !slices.Equal(raw, stored.Secrets[0].Key) {
		t.Errorf("secret %q is not the stored one (%v)", sec.Secret, err)
	}
	rec = do(t, h, "POST", "/bouncer/v1/webhooks/"+id+"/secret/rotate", key, "")
	var rot webhookSecretJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &rot); err != nil || rec.Code != 200 || rot.Secret == sec.Secret || rot.PreviousExpiresAt == nil ||
		*rot.PreviousExpiresAt != now.Add(24*time.Hour).Format(time.RFC3339) {
		t.Fatalf("rotate: %d %s", rec.Code, rec.Body)
	}
	after, _, _ := st.Webhook(context.Background(), "acme", id)
	if len(after.Secrets) != 2 || !after.Secrets[0].NotAfter.IsZero() || !after.Secrets[1].NotAfter.Equal(now.Add(24*time.Hour)) {
		t.Errorf("secrets after rotation: %+v", after.Secrets)
	}
	rec = do(t, h, "POST", "/bouncer/v1/webhooks/"+id+"/secret/rotate", key, `{"grace_period_seconds":0}`)
	if m := decodeExact(t, rec.Body.String(), "id", "secret", "previous_secret_expires_at"); m["previous_secret_expires_at"] != nil {
		t.Errorf("rotate with no grace: %s", rec.Body)
	}
	if after, _, _ := st.Webhook(context.Background(), "acme", id); len(after.Secrets) != 1 {
		t.Errorf("grace 0 kept %d secrets, want 1", len(after.Secrets))
	}

	rec = do(t, h, "DELETE", "/v3/user/webhooks/event/settings/"+id, key, "")
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Errorf("delete: %d %q", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id, key, ""); rec.Code != 404 {
		t.Errorf("get after delete: %d", rec.Code)
	}
	rec = do(t, h, "GET", "/v3/user/webhooks/event/settings/all", key, "")
	if strings.TrimSpace(rec.Body.String()) != `{"max_allowed":5,"webhooks":[]}` {
		t.Errorf("empty list: %s", rec.Body)
	}
}

// TestWebhookReenableClearsDisabled: a subscription delivery disabled
// shows "enabled": false until PATCH enabled=true clears the state.
func TestWebhookReenableClearsDisabled(t *testing.T) {
	h, st, key, _, now := webhookServer(t)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://hooks.example.com/a","delivered":true}`)
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	w, _, _ := st.Webhook(context.Background(), "acme", id)
	w.DisabledAt, w.DisabledReason = now, "410 Gone"
	st.PutWebhook(context.Background(), "acme", w)
	if rec := do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id, key, ""); !strings.Contains(rec.Body.String(), `"enabled":false`) {
		t.Errorf("disabled by delivery: %s", rec.Body)
	}
	if rec := do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"friendly_name":"x"}`); !strings.Contains(rec.Body.String(), `"enabled":false`) {
		t.Errorf("a patch without enabled re-enabled it: %s", rec.Body)
	}
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"enabled":true}`)
	w, _, _ = st.Webhook(context.Background(), "acme", id)
	if !strings.Contains(rec.Body.String(), `"enabled":true`) || !w.DisabledAt.IsZero() || w.DisabledReason != "" || !w.Active() {
		t.Errorf("re-enabled: %s, stored %+v", rec.Body, w)
	}
}

// TestWebhookErrors: bad input gets SendGrid's error shape with the field
// at fault, and nothing is stored.
func TestWebhookErrors(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	readOnly, kr := testKey(t, "acme", false, "user.webhooks.event.settings.read")
	h2 := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kr}, Webhooks: st, WebhookTester: guardedTester{st: st}, RateLimit: 10000})
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://taken.example.com/"}`)
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	base := "/v3/user/webhooks/event/settings"
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"bad JSON", "POST", base, `{"url":`, 400, ""},
		{"empty body", "POST", base, ``, 400, ""},
		{"no url", "POST", base, `{"bounce":true}`, 400, "url"},
		{"empty url", "POST", base, `{"url":"  "}`, 400, "url"},
		{"url of the wrong type", "POST", base, `{"url":42}`, 400, "url"},
		{"event of the wrong type", "POST", base, `{"url":"https://a.example.com/","bounce":"yes"}`, 400, "bounce"},
		{"not http", "POST", base, `{"url":"ftp://a.example.com/"}`, 400, "url"},
		{"javascript url", "POST", base, `{"url":"javascript:alert(1)"}`, 400, "url"},
		{"private address", "POST", base, `{"url":"http://10.0.0.7/hook"}`, 400, "url"},
		{"metadata service", "POST", base, `{"url":"http://169.254.169.254/latest/meta-data/"}`, 400, "url"},
		{"loopback outside the allow-list", "POST", base, `{"url":"http://127.0.0.2:8080/"}`, 400, "url"},
		{"credentials in url", "POST", base, `{"url":"https://user:pw@a.example.com/"}`, 400, "url"},
		{"url too long", "POST", base, `{"url":"https://a.example.com/` + strings.Repeat("a", 2100) + `"}`, 400, "url"},
		{"duplicate url", "POST", base, `{"url":"https://taken.example.com/"}`, 400, "url"},
		{"oauth client id without token url", "POST", base, `{"url":"https://a.example.com/","oauth_client_id":"abc"}`, 400, "oauth_token_url"},
		{"oauth token url without client id", "POST", base, `{"url":"https://a.example.com/","oauth_token_url":"https://auth.example.com/token"}`, 400, "oauth_client_id"},
		{"oauth without a secret the first time", "POST", base, `{"url":"https://a.example.com/","oauth_client_id":"abc","oauth_token_url":"https://auth.example.com/token"}`, 400, "oauth_client_secret"},
		{"oauth secret alone", "POST", base, `{"url":"https://a.example.com/","oauth_client_secret":"s"}`, 400, "oauth_client_secret"},
		{"oauth token url at a private address", "POST", base, `{"url":"https://a.example.com/","oauth_client_id":"abc","oauth_client_secret":"s","oauth_token_url":"http://169.254.169.254/token"}`, 400, "oauth_token_url"},
		{"oauth token url not http", "POST", base, `{"url":"https://a.example.com/","oauth_client_id":"abc","oauth_client_secret":"s","oauth_token_url":"file:///etc/passwd"}`, 400, "oauth_token_url"},
		{"oauth client id with control characters", "POST", base, `{"url":"https://a.example.com/","oauth_client_id":"a\u0000b","oauth_client_secret":"s","oauth_token_url":"https://auth.example.com/token"}`, 400, "oauth_client_id"},
		{"friendly name too long", "POST", base, `{"url":"https://a.example.com/","friendly_name":"` + strings.Repeat("n", 101) + `"}`, 400, "friendly_name"},
		{"friendly name with control characters", "POST", base, `{"url":"https://a.example.com/","friendly_name":"a\u0000b"}`, 400, "friendly_name"},
		{"body over the limit", "POST", base, `{"url":"https://a.example.com/","friendly_name":"` + strings.Repeat("n", 5000) + `"}`, 413, ""},
		{"unknown id", "GET", base + "/5b0f6a3e-3c2b-4b8e-9d8e-1f2a3b4c5d6e", "", 404, ""},
		{"id not a uuid", "GET", base + "/42", "", 404, ""},
		{"SQL in the id", "GET", base + "/'%20OR%201=1--", "", 404, ""},
		{"path traversal in the id", "GET", base + "/..%2F..%2Fall", "", 404, ""},
		{"NUL in the id", "DELETE", base + "/" + id + "%00", "", 404, ""},
		{"patch unknown id", "PATCH", base + "/5b0f6a3e-3c2b-4b8e-9d8e-1f2a3b4c5d6e", `{"enabled":true}`, 404, ""},
		{"patch bad url", "PATCH", base + "/" + id, `{"url":"gopher://x"}`, 400, "url"},
		{"misspelt event", "POST", base, `{"url":"https://a.example.com/","spamreport":true}`, 400, "spamreport"},
		{"patch misspelt field", "PATCH", base + "/" + id, `{"enable":true}`, 400, "enable"},
		{"patch not an object", "PATCH", base + "/" + id, `null`, 400, ""},
		{"signed without enabled", "PATCH", base + "/signed/" + id, `{}`, 400, "enabled"},
		{"rotate unknown field", "POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", `{"grace":60}`, 400, "grace"},
		{"signed enabled not a bool", "PATCH", base + "/signed/" + id, `{"enabled":"true"}`, 400, "enabled"},
		{"rotate negative grace", "POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", `{"grace_period_seconds":-1}`, 400, "grace_period_seconds"},
		{"rotate grace over a week", "POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", `{"grace_period_seconds":604801}`, 400, "grace_period_seconds"},
		{"rotate bad JSON", "POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", `{"grace`, 400, ""},
		{"test without url or id", "POST", "/v3/user/webhooks/event/test", `{}`, 400, "url"},
		{"test unknown id", "POST", "/v3/user/webhooks/event/test", `{"id":"5b0f6a3e-3c2b-4b8e-9d8e-1f2a3b4c5d6e"}`, 404, ""},
		{"test private url", "POST", "/v3/user/webhooks/event/test", `{"url":"http://192.168.1.1/"}`, 400, "url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.path, key, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			field, msg := sendGridError(t, rec)
			if got := ""; field != nil {
				got = *field
				if got != tc.field {
					t.Errorf("field %q, want %q (%s)", got, tc.field, msg)
				}
			} else if tc.field != "" {
				t.Errorf("field null, want %q (%s)", tc.field, msg)
			}
		})
	}
	if ws, _ := st.Webhooks(context.Background(), "acme"); len(ws) != 1 {
		t.Errorf("%d subscriptions stored after bad requests, want the one good one", len(ws))
	}
	if rec := do(t, h2, "PATCH", base+"/"+id, readOnly, `{"enabled":false}`); rec.Code != 403 {
		t.Errorf("read-only key patching: %d", rec.Code)
	}
	if rec := do(t, h2, "GET", "/bouncer/v1/webhooks/"+id+"/secret", readOnly, ""); rec.Code != 403 {
		t.Errorf("read-only key reading the secret: %d, want 403 (the secret needs the update scope)", rec.Code)
	}
	if rec := do(t, h2, "GET", base+"/"+id, readOnly, ""); rec.Code != 200 {
		t.Errorf("read-only key reading the settings: %d", rec.Code)
	}
}

// TestWebhookLimitPerAccount: the sixth subscription of an account is
// refused with a clear 400; another account is not affected.
func TestWebhookLimitPerAccount(t *testing.T) {
	h, _, keyA, keyB, _ := webhookServer(t)
	for i := range MaxWebhooks {
		rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", keyA, `{"url":"https://hooks.example.com/`+string(rune('a'+i))+`"}`)
		if rec.Code != 201 {
			t.Fatalf("subscription %d: %d %s", i+1, rec.Code, rec.Body)
		}
	}
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", keyA, `{"url":"https://hooks.example.com/z"}`)
	if rec.Code != 400 {
		t.Fatalf("sixth: %d %s", rec.Code, rec.Body)
	}
	if _, msg := sendGridError(t, rec); !strings.Contains(msg, "maximum number of webhooks (5 per account)") {
		t.Errorf("sixth: message %q", msg)
	}
	if rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", keyB, `{"url":"https://hooks.example.com/z"}`); rec.Code != 201 {
		t.Errorf("another account: %d %s", rec.Code, rec.Body)
	}
}

// TestWebhookTenancy: another account's id answers 404 on every route, as
// an unknown id does, and changes nothing.
func TestWebhookTenancy(t *testing.T) {
	h, st, keyA, keyB, _ := webhookServer(t)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", keyA, `{"url":"https://a.example.com/","bounce":true}`)
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	before, _, _ := st.Webhook(context.Background(), "acme", id)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v3/user/webhooks/event/settings/" + id, ""},
		{"PATCH", "/v3/user/webhooks/event/settings/" + id, `{"enabled":false}`},
		{"DELETE", "/v3/user/webhooks/event/settings/" + id, ""},
		{"GET", "/v3/user/webhooks/event/settings/signed/" + id, ""},
		{"PATCH", "/v3/user/webhooks/event/settings/signed/" + id, `{"enabled":true}`},
		{"GET", "/bouncer/v1/webhooks/" + id + "/secret", ""},
		{"POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", ""},
		{"POST", "/v3/user/webhooks/event/test", `{"id":"` + id + `"}`},
	} {
		rec := do(t, h, r.method, r.path, keyB, r.body)
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "Invalid id provided.") {
			t.Errorf("globex %s %s: %d %s, want 404", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if rec := do(t, h, "GET", "/v3/user/webhooks/event/settings/all", keyB, ""); !strings.Contains(rec.Body.String(), `"webhooks":[]`) {
		t.Errorf("globex's list: %s", rec.Body)
	}
	after, _, _ := st.Webhook(context.Background(), "acme", id)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("acme's subscription changed through globex's requests")
	}
}

// TestWebhooksUnavailable: without a store the routes answer 404, without
// a key to seal secrets 503 saying what to set.
func TestWebhooksUnavailable(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	if rec := do(t, h, "GET", "/v3/user/webhooks/event/settings/all", token, ""); rec.Code != 404 {
		t.Errorf("no webhook store: %d %s", rec.Code, rec.Body)
	}
	st := newFakeWebhooks()
	st.notReady = errors.New("set BOUNCER_SECRET_KEY")
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Webhooks: st, WebhookTester: guardedTester{st: st}})
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", token, `{"url":"https://a.example.com/"}`)
	if rec.Code != 503 {
		t.Fatalf("no secret key: %d %s", rec.Code, rec.Body)
	}
	if field, msg := sendGridError(t, rec); field != nil || msg != "set BOUNCER_SECRET_KEY" {
		t.Errorf("no secret key: %v %q", field, msg)
	}
}

// receiver records the requests a test receiver got.
type receiver struct {
	mu     sync.Mutex
	status int
	bodies [][]byte
	heads  []http.Header
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.bodies, rc.heads = append(rc.bodies, b), append(rc.heads, r.Header.Clone())
	status := rc.status
	rc.mu.Unlock()
	w.WriteHeader(status)
}

// TestWebhookTestDelivery: the test route POSTs sample events of the
// selected types to a loopback receiver, signed so that both vendors'
// verifiers accept them, and reports a failing receiver as 502.
func TestWebhookTestDelivery(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	// The server's clock is fixed in the past; the verifiers check
	// timestamps against the real clock.
	rcv := &receiver{status: 200}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	st.allow(srv)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"`+srv.URL+`/events","bounce":true,"spam_report":true}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/signed/"+id, key, `{"enabled":true}`)
	var pk webhookSignedJSON
	json.Unmarshal(rec.Body.Bytes(), &pk)
	rec = do(t, h, "GET", "/bouncer/v1/webhooks/"+id+"/secret", key, "")
	var sec webhookSecretJSON
	json.Unmarshal(rec.Body.Bytes(), &sec)

	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+id+`"}`)
	if rec.Code != 204 || rec.Header().Get("X-Bouncer-Receiver-Status") != "200" {
		t.Fatalf("test: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	rcv.mu.Lock()
	body, head := rcv.bodies[0], rcv.heads[0]
	rcv.mu.Unlock()
	var events []map[string]any
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatalf("batch: %v: %s", err, body)
	}
	var names []string
	for _, e := range events {
		names = append(names, e["event"].(string))
		if e["sg_event_id"] == "" || e["email"] == "" || e["timestamp"] == nil {
			t.Errorf("event without SendGrid's fields: %v", e)
		}
	}
	if !slices.Equal(names, []string{"bounce", "spamreport"}) {
		t.Errorf("events %v, want the selected bounce and spamreport", names)
	}
	// The server's clock is in the past, so the Standard Webhooks check
	// ignores the timestamp window (the signature still covers it).
	wh, err := standardwebhooks.NewWebhook(sec.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.VerifyIgnoringTimestamp(body, head); err != nil {
		t.Errorf("Standard Webhooks verify: %v (headers %v)", err, head)
	}
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(pk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := eventwebhook.VerifySignature(pub, body, head.Get(eventwebhook.VerificationHTTPHeader), head.Get(eventwebhook.TimestampHTTPHeader))
	if !ok || err != nil {
		t.Errorf("SendGrid verify: %v %v", ok, err)
	}

	// To another URL, unsigned without an id; a failing receiver is a 502.
	rcv.mu.Lock()
	rcv.status = 500
	rcv.mu.Unlock()
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+srv.URL+`/other"}`)
	if rec.Code != 502 || rec.Header().Get("X-Bouncer-Receiver-Status") != "500" {
		t.Fatalf("failing receiver: %d %s", rec.Code, rec.Body)
	}
	if _, msg := sendGridError(t, rec); !strings.Contains(msg, "answered HTTP 500 Internal Server Error") {
		t.Errorf("failing receiver: %q", msg)
	}
	rcv.mu.Lock()
	head = rcv.heads[1]
	events = nil
	json.Unmarshal(rcv.bodies[1], &events)
	rcv.mu.Unlock()
	if len(events) != len(subscription.EventTypes) || head.Get("webhook-signature") != "" || head.Get(eventwebhook.VerificationHTTPHeader) != "" {
		t.Errorf("test without an id: %d events, signature %q", len(events), head.Get("webhook-signature"))
	}

	// Nobody listening on an allowed port: 502 with the class only.
	closed := httptest.NewServer(http.NotFoundHandler())
	st.allow(closed)
	closed.Close()
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+closed.URL+`/"}`)
	if rec.Code != 502 || rec.Header().Get("X-Bouncer-Receiver-Status") != "" {
		t.Errorf("closed port: %d %s", rec.Code, rec.Body)
	}
	if _, msg := sendGridError(t, rec); msg != "test delivery to "+closed.URL+"/ failed: refused: the connection was refused" {
		t.Errorf("closed port: message %q", msg)
	}

	// A name that resolves to a blocked address is refused at dial time,
	// without naming the address it resolved to.
	st.mu.Lock()
	st.guard = safedial.Guard{}
	st.mu.Unlock()
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"http://localhost:`+strings.TrimPrefix(srv.URL, "http://127.0.0.1:")+`/"}`)
	if rec.Code != 400 {
		t.Fatalf("localhost without an allow-list: %d %s", rec.Code, rec.Body)
	}
	if field, msg := sendGridError(t, rec); field == nil || *field != "url" || !strings.Contains(msg, "blocked: ") || strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "::1") {
		t.Errorf("localhost without an allow-list: %v %q", field, msg)
	}
}

// TestWebhookTestDeliveryAllowListPorts is the security review's finding
// 1: with loopback allowed for a receiver, a test delivery could POST to
// any loopback port (ClickHouse's HTTP interface inserted a row), and the
// answers (bodies, "connection refused", "EOF") scanned the ports. Now only
// the allowed port is reached, and the tenant sees classes, never bodies.
func TestWebhookTestDeliveryAllowListPorts(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	var hits atomic.Int64
	// An internal service on loopback, answering with secrets.
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
		io.WriteString(w, "Code: 62. DB::Exception: internal-table-name secret-token-42")
	}))
	defer internal.Close()
	rcv := &receiver{status: 200}
	allowed := httptest.NewServer(rcv)
	defer allowed.Close()
	st.allow(allowed)
	port := strings.TrimPrefix(internal.URL, "http://127.0.0.1:")
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"`+allowed.URL+`/events"}`)
	if rec.Code != 201 {
		t.Fatalf("create on the allowed port: %d %s", rec.Code, rec.Body)
	}
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)

	// Every route that takes a URL, with the internal port in every form.
	for _, u := range []string{internal.URL + "/?query=INSERT%20INTO%20t%20FORMAT%20TSV", "http://127.0.0.1:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/", "http://127.0.0.1/", "http://localhost:" + port + "/"} {
		for _, route := range []struct{ method, path, body string }{
			{"POST", "/v3/user/webhooks/event/test", `{"url":"` + u + `"}`},
			{"POST", "/v3/user/webhooks/event/test", `{"id":"` + id + `","url":"` + u + `"}`},
			{"POST", "/v3/user/webhooks/event/settings", `{"url":"` + u + `"}`},
			{"PATCH", "/v3/user/webhooks/event/settings/" + id, `{"url":"` + u + `x"}`},
		} {
			rec := do(t, h, route.method, route.path, key, route.body)
			if !strings.HasSuffix(route.path, "/test") && strings.Contains(u, "localhost") {
				// Names are checked when dialed; storing one is fine.
				if rec.Code/100 != 2 {
					t.Errorf("%s %s: %d %s", route.method, u, rec.Code, rec.Body)
				}
				continue
			}
			if rec.Code != 400 {
				t.Errorf("%s %s: %d %s, want 400", route.path, u, rec.Code, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "secret-token") || strings.Contains(rec.Body.String(), "DB::Exception") {
				t.Errorf("%s %s shows the internal answer: %s", route.path, u, rec.Body)
			}
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the internal service got %d requests", hits.Load())
	}

	// Allowed, the internal service's body still never reaches the tenant.
	st.allow(internal)
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+internal.URL+`/"}`)
	if rec.Code != 502 || hits.Load() != 1 {
		t.Fatalf("allowed internal: %d %s (hits %d)", rec.Code, rec.Body, hits.Load())
	}
	if _, msg := sendGridError(t, rec); msg != "test delivery to "+internal.URL+"/ failed: the receiver answered HTTP 500 Internal Server Error (want a 2xx status)" {
		t.Errorf("allowed internal: message %q", msg)
	}
}

// TestWebhookTestDeliveryTimeout: a receiver that never answers costs the
// caller the tester's timeout (10s, on a fake clock here) and a 502 saying
// so, not a hung request.
func TestWebhookTestDeliveryTimeout(t *testing.T) {
	t.Parallel()
	key, k := testKey(t, "acme", false)
	st := newFakeWebhooks()
	clock := clockwork.NewFakeClock()
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Webhooks: st, WebhookTester: guardedTester{st: st, clock: clock},
		RateLimit: 10000, MaxBodyBytes: 4096})
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	st.allow(srv)
	answered := make(chan *httptest.ResponseRecorder)
	go func() {
		answered <- do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+srv.URL+`/hang"}`)
	}()
	<-arrived
	clock.Advance(10*time.Second - time.Millisecond)
	select {
	case rec := <-answered:
		t.Fatalf("answered before the timeout: %d %s", rec.Code, rec.Body)
	default:
	}
	clock.Advance(time.Millisecond)
	rec := <-answered
	if rec.Code != 502 {
		t.Fatalf("hanging receiver: %d %s", rec.Code, rec.Body)
	}
	if _, msg := sendGridError(t, rec); !strings.HasSuffix(msg, "failed: timeout: no answer in time") {
		t.Errorf("hanging receiver: %q", msg)
	}
}

// TestWebhookPatchRoundTrip: what GET answered, sent back as a PATCH (as
// SendGrid clients do), is accepted and changes nothing.
func TestWebhookPatchRoundTrip(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings?include=account_status_change", key, `{"url":"https://a.example.com/","bounce":true,"friendly_name":"n"}`)
	id := decodeExact(t, rec.Body.String(), webhookKeys("friendly_name", "created_date", "updated_date", "account_status_change")...)["id"].(string)
	do(t, h, "PATCH", "/v3/user/webhooks/event/settings/signed/"+id, key, `{"enabled":true}`)
	before, _, _ := st.Webhook(context.Background(), "acme", id)
	got := do(t, h, "GET", "/v3/user/webhooks/event/settings/"+id+"?include=account_status_change", key, "")
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, got.Body.String())
	if rec.Code != 200 {
		t.Fatalf("round trip: %d %s", rec.Code, rec.Body)
	}
	after, _, _ := st.Webhook(context.Background(), "acme", id)
	after.Version, before.Version = 0, 0
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a round trip changed the subscription:\n%+v\n%+v", before, after)
	}
}

// webhookTableRoutes are the subscription routes of the table: SendGrid's
// /v3/user/webhooks/event/... and bouncer's secret routes.
func webhookTableRoutes() []route {
	var out []route
	for _, rt := range (&server{}).routes() {
		if strings.HasPrefix(rt.path, "/v3/user/webhooks/event/") || strings.HasPrefix(rt.path, "/v3/user/webhooks/security/") ||
			strings.HasPrefix(rt.path, "/bouncer/v1/webhooks/{id}/secret") {
			out = append(out, rt)
		}
	}
	return out
}

// TestWebhookHostileInput runs the package's hostile inputs (bad JSON,
// path tricks, oversize bodies) through every webhook route with an
// existing subscription: each answer is a 4xx in SendGrid's shape (or a
// redirect to the clean path) and nothing is written.
func TestWebhookHostileInput(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://a.example.com/"}`)
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	before, _ := st.Webhooks(context.Background(), "acme")
	for _, rt := range webhookTableRoutes() {
		path := strings.ReplaceAll(rt.path, "{id}", id)
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			rec := do(t, h, rt.method, path, key, strings.Repeat("x", 5000))
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("body over the limit: %d %.200s", rec.Code, rec.Body)
			}
			if rt.method != "GET" && rt.method != "DELETE" {
				for _, b := range badJSON {
					if b == "" && strings.HasSuffix(rt.path, "/rotate") {
						continue // an empty body takes the defaults
					}
					checkHostile(t, do(t, h, rt.method, path, key, b), "body "+b[:min(len(b), 40)])
				}
			}
			for _, tr := range pathTricks {
				p := tr.fn(path)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hostileReq(rt.method, p, key, ""))
				if rec.Code >= 300 && rec.Code < 400 {
					if loc := rec.Header().Get("Location"); strings.Contains(loc, "..") || !strings.HasPrefix(loc, "/") {
						t.Errorf("%s %s: redirect to %q", tr.name, p, loc)
					}
					continue
				}
				checkHostile(t, rec, tr.name+" "+p)
			}
		})
	}
	after, _ := st.Webhooks(context.Background(), "acme")
	if !reflect.DeepEqual(before, after) {
		t.Errorf("hostile requests changed the subscription")
	}
}

// TestWebhookTestDeliveryHidesResolver: a name that does not resolve
// answered "dial tcp: lookup x on 10.255.255.53:53: no such host", naming
// the DNS resolver of bouncer's network (security review, item 11). Now the
// class only.
func TestWebhookTestDeliveryHidesResolver(t *testing.T) {
	h, _, key, _, _ := webhookServer(t)
	const target = "http://no-such-host.invalid/hook"
	rec := do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+target+`"}`)
	if rec.Code != 502 {
		t.Fatalf("unresolvable name: %d %s", rec.Code, rec.Body)
	}
	_, msg := sendGridError(t, rec)
	// dns where a resolver answers; timeout where none does.
	if msg != "test delivery to "+target+" failed: dns: the host name did not resolve" &&
		msg != "test delivery to "+target+" failed: timeout: no answer in time" {
		t.Errorf("unresolvable name: message %q", msg)
	}
	if strings.Contains(msg, "lookup") || strings.Contains(msg, ":53") {
		t.Errorf("the message names the resolver: %q", msg)
	}
}

// TestWebhookTestScope is the security review's finding 9 for webhooks: a
// key with only the test scope got batches signed with a subscription's
// real secret sent to any URL (its holder could then replay them, signed,
// to the real receiver). Signed tests now go to the subscription's own URL
// unless the key may read the secret anyway (the update scope).
func TestWebhookTestScope(t *testing.T) {
	testOnly, kTest := testKey(t, "acme", false, scopeWebhookTest)
	testUpdate, kTU := testKey(t, "acme", false, scopeWebhookTest, scopeWebhookUpdate)
	owner, kOwner := testKey(t, "acme", false)
	st := newFakeWebhooks()
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kTest, kTU, kOwner}, Webhooks: st, WebhookTester: guardedTester{st: st}, RateLimit: 10000, MaxBodyBytes: 4096})
	own, elsewhere := &receiver{status: 200}, &receiver{status: 200}
	ownSrv, elsewhereSrv := httptest.NewServer(own), httptest.NewServer(elsewhere)
	defer ownSrv.Close()
	defer elsewhereSrv.Close()
	st.allow(ownSrv)
	st.allow(elsewhereSrv)
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", owner, `{"url":"`+ownSrv.URL+`/events","bounce":true}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	id := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)["id"].(string)
	got := func(rc *receiver) (n int, signed bool) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, h := range rc.heads {
			signed = signed || h.Get("webhook-signature") != ""
		}
		return len(rc.heads), signed
	}

	// The test scope alone: signed to the webhook's own URL (also when
	// named), unsigned anywhere, never signed elsewhere.
	for _, body := range []string{`{"id":"` + id + `"}`, `{"id":"` + id + `","url":"` + ownSrv.URL + `/events"}`} {
		if rec := do(t, h, "POST", "/v3/user/webhooks/event/test", testOnly, body); rec.Code != 204 {
			t.Errorf("test scope, own URL %s: %d %s", body, rec.Code, rec.Body)
		}
	}
	if n, signed := got(own); n != 2 || !signed {
		t.Errorf("own receiver got %d tests, signed %v", n, signed)
	}
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", testOnly, `{"id":"`+id+`","url":"`+elsewhereSrv.URL+`/x"}`)
	if field, msg := sendGridError(t, rec); rec.Code != 403 || field == nil || *field != "url" || !strings.Contains(msg, scopeWebhookUpdate) {
		t.Errorf("test scope, signed to another URL: %d %s", rec.Code, rec.Body)
	}
	if n, _ := got(elsewhere); n != 0 {
		t.Fatalf("another URL got %d signed tests from a key with the test scope only", n)
	}
	if rec := do(t, h, "POST", "/v3/user/webhooks/event/test", testOnly, `{"url":"`+elsewhereSrv.URL+`/x"}`); rec.Code != 204 {
		t.Errorf("test scope, unsigned to another URL: %d %s", rec.Code, rec.Body)
	}
	if n, signed := got(elsewhere); n != 1 || signed {
		t.Errorf("unsigned test: %d requests, signed %v", n, signed)
	}

	// With the update scope (which reads the secret) a signed test may go
	// anywhere the guard allows.
	if rec := do(t, h, "POST", "/v3/user/webhooks/event/test", testUpdate, `{"id":"`+id+`","url":"`+elsewhereSrv.URL+`/x"}`); rec.Code != 204 {
		t.Errorf("test and update scopes, another URL: %d %s", rec.Code, rec.Body)
	}
	if n, signed := got(elsewhere); n != 2 || !signed {
		t.Errorf("signed test with the update scope: %d requests, signed %v", n, signed)
	}
}
