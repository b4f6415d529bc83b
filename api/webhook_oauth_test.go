package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/oauthtest"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
)

// TestWebhookOAuthSettings: OAuth settings are stored with the secret,
// shown as SendGrid shows them (client id and token URL, never the
// secret), kept when an update leaves the secret out, and turned off by
// empty values.
func TestWebhookOAuthSettings(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	const secret = "oauth-secret-never-shown"
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://hooks.example.com/o","bounce":true,`+
		`"oauth_client_id":"client-a","oauth_client_secret":"`+secret+`","oauth_token_url":"https://auth.example.com/token"}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	m := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date", "oauth_client_id", "oauth_token_url")...)
	id := m["id"].(string)
	if m["oauth_client_id"] != "client-a" || m["oauth_token_url"] != "https://auth.example.com/token" {
		t.Errorf("create: %s", rec.Body)
	}
	stored, _, _ := st.Webhook(context.Background(), "acme", id)
	if stored.OAuth == nil || stored.OAuth.ClientSecret != secret || stored.OAuth.ClientID != "client-a" {
		t.Fatalf("stored OAuth %+v", stored.OAuth)
	}
	// No route shows the secret.
	for _, path := range []string{"/v3/user/webhooks/event/settings/" + id, "/v3/user/webhooks/event/settings/all"} {
		rec := do(t, h, "GET", path, key, "")
		if rec.Code != 200 || strings.Contains(rec.Body.String(), secret) || !strings.Contains(rec.Body.String(), `"oauth_client_id":"client-a"`) {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	// A new client id without the secret keeps the secret (as in SendGrid).
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"oauth_client_id":"client-b"}`)
	if rec.Code != 200 || strings.Contains(rec.Body.String(), secret) {
		t.Fatalf("patch client id: %d %s", rec.Code, rec.Body)
	}
	if stored, _, _ := st.Webhook(context.Background(), "acme", id); stored.OAuth == nil || stored.OAuth.ClientID != "client-b" ||
		stored.OAuth.ClientSecret != secret || stored.OAuth.TokenURL != "https://auth.example.com/token" {
		t.Errorf("after a new client id: %+v", stored.OAuth)
	}
	// A token URL the guard refuses is refused on update too.
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"oauth_token_url":"http://10.1.2.3/token"}`)
	if field, _ := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "oauth_token_url" {
		t.Errorf("private token URL: %d %s", rec.Code, rec.Body)
	}
	// Both empty: OAuth off, the secret forgotten, the fields gone.
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"oauth_client_id":"","oauth_token_url":""}`)
	if rec.Code != 200 {
		t.Fatalf("OAuth off: %d %s", rec.Code, rec.Body)
	}
	decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date")...)
	if stored, _, _ := st.Webhook(context.Background(), "acme", id); stored.OAuth != nil {
		t.Errorf("OAuth off kept %+v", stored.OAuth)
	}
	// Setting it again needs the secret again.
	rec = do(t, h, "PATCH", "/v3/user/webhooks/event/settings/"+id, key, `{"oauth_client_id":"client-a","oauth_token_url":"https://auth.example.com/token"}`)
	if field, _ := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "oauth_client_secret" {
		t.Errorf("OAuth again without the secret: %d %s", rec.Code, rec.Body)
	}
}

// TestWebhookTestDeliveryOAuth: a test delivery of a webhook with OAuth
// gets a token from a real authorization server and sends it; with wrong
// credentials nothing is sent and the answer says what to check; a body's
// OAuth settings are tested with the saved secret when they leave it out.
func TestWebhookTestDeliveryOAuth(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	as := oauthtest.Start(t, "client-a", "right", time.Hour)
	rcv := &receiver{status: 200}
	srv := httptest.NewServer(as.Protect(rcv))
	defer srv.Close()
	st.allow(srv)
	st.mu.Lock()
	st.guard.Allow = append(st.guard.Allow, safedial.RuleFor(netip.MustParseAddrPort(as.HTTP.Listener.Addr().String())))
	st.mu.Unlock()

	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"`+srv.URL+`/e","bounce":true,`+
		`"oauth_client_id":"client-a","oauth_client_secret":"right","oauth_token_url":"`+as.TokenURL+`"}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	var created map[string]any
	json.Unmarshal(rec.Body.Bytes(), &created)
	id := created["id"].(string)
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+id+`"}`)
	if rec.Code != 204 || as.Issued() != 1 {
		t.Fatalf("test with the saved OAuth: %d %s, %d tokens issued", rec.Code, rec.Body, as.Issued())
	}
	rcv.mu.Lock()
	got := len(rcv.bodies)
	auth := rcv.heads[0].Get("Authorization")
	rcv.mu.Unlock()
	if got != 1 || !strings.HasPrefix(auth, "Bearer ") {
		t.Errorf("receiver got %d requests, Authorization %q", got, auth)
	}

	// Wrong secret in the body: no token, nothing sent, a clear 502.
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+id+`","oauth_client_id":"client-a","oauth_client_secret":"wrong","oauth_token_url":"`+as.TokenURL+`"}`)
	field, msg := sendGridError(t, rec)
	if rec.Code != 502 || field == nil || *field != "oauth_token_url" || !strings.Contains(msg, "HTTP 401 Unauthorized (invalid_client): check oauth_client_id and oauth_client_secret") {
		t.Errorf("wrong secret: %d %s", rec.Code, rec.Body)
	}
	rcv.mu.Lock()
	got = len(rcv.bodies)
	rcv.mu.Unlock()
	if got != 1 {
		t.Errorf("a test with wrong credentials reached the receiver (%d requests)", got)
	}
	// The body's client id and token URL with the saved secret.
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+id+`","oauth_client_id":"client-a","oauth_token_url":"`+as.TokenURL+`"}`)
	if rec.Code != 204 || as.Issued() != 2 {
		t.Errorf("test with the saved secret: %d %s, %d tokens issued", rec.Code, rec.Body, as.Issued())
	}
	// Without an id there is no saved secret to use.
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"url":"`+srv.URL+`/e","oauth_client_id":"client-a","oauth_token_url":"`+as.TokenURL+`"}`)
	if field, _ := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "oauth_client_secret" {
		t.Errorf("test without a secret: %d %s", rec.Code, rec.Body)
	}
	// A token endpoint that is down: 502 with its status.
	as.SetDown(true)
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+id+`"}`)
	if _, msg := sendGridError(t, rec); rec.Code != 502 || !strings.Contains(msg, "the token endpoint answered HTTP 503 Service Unavailable") {
		t.Errorf("token endpoint down: %d %s", rec.Code, rec.Body)
	}
}

// oauthOps answers the state of one endpoint whose token requests fail.
type oauthOps struct{ fakeOps }

func (o *oauthOps) WebhookState(_ context.Context, account, id string) (subscription.Webhook, subscription.DeliveryState, bool, error) {
	if account != "acme" || id != "ep1" {
		return subscription.Webhook{}, subscription.DeliveryState{}, false, nil
	}
	return subscription.Webhook{ID: id, URL: "https://hooks.example.com/x", Enabled: true,
			OAuth: &subscription.OAuth{ClientID: "client-a", TokenURL: "https://auth.example.com/token"}},
		subscription.DeliveryState{Circuit: "closed", LastSuccess: time.Unix(1764201600, 0), LastFailure: time.Unix(1764201660, 0),
			LastOAuthFailure: time.Unix(1764201660, 0),
			LastOAuthError:   "OAuth token request failed: the token endpoint answered HTTP 401 Unauthorized (invalid_client): check oauth_client_id and oauth_client_secret"},
		true, nil
}

// TestWebhookStateShowsOAuthFailing: wrong credentials are a clear state
// of the subscription: oauth.state "failing" with the reason.
func TestWebhookStateShowsOAuthFailing(t *testing.T) {
	tok, key := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{key}, WebhookOps: &oauthOps{}})
	rec := do(t, h, "GET", "/bouncer/v1/webhooks/ep1/state", tok, "")
	var st webhookStateJSON
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &st) != nil || st.OAuth == nil {
		t.Fatalf("state: %d %s", rec.Code, rec.Body)
	}
	if st.OAuth.State != "failing" || !strings.Contains(st.OAuth.Error, "check oauth_client_id") || st.OAuth.ClientID != "client-a" || st.OAuth.FailedAt != 1764201660 {
		t.Errorf("oauth state: %+v", st.OAuth)
	}
}
