package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/oauthtest"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
)

type policyView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	OAuth *struct {
		ClientID string   `json:"client_id"`
		TokenURL string   `json:"token_url"`
		Scopes   []string `json:"scopes"`
	} `json:"oauth"`
	Signature *struct {
		PublicKey string `json:"public_key"`
	} `json:"signature"`
}

func decodePolicy(t *testing.T, body string) policyView {
	t.Helper()
	var env struct {
		Policy policyView `json:"policy"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil || env.Policy.ID == "" {
		t.Fatalf("policy answer %s: %v", body, err)
	}
	return env.Policy
}

// TestSecurityPolicyLifecycle walks a policy through the five operations
// with SendGrid's shapes: create (oauth with scopes, signature), list,
// get, patch (the secret kept, scopes changed, signing off), delete (only
// with force while a webhook uses it); the secret is never answered.
func TestSecurityPolicyLifecycle(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	const base = "/v3/user/webhooks/security/policies"
	const secret = "policy-secret-never-shown"
	rec := do(t, h, "POST", base, key, `{"name":"warehouse","oauth":{"client_id":"c1","client_secret":"`+secret+`",`+
		`"token_url":"https://auth.example.com/token","scopes":["events:write","events:read"]},"signature":{"enabled":true}}`)
	if rec.Code != 201 || strings.Contains(rec.Body.String(), secret) {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	m := decodeExact(t, rec.Body.String(), "policy")
	decodeExact(t, mustJSON(t, m["policy"]), "id", "name", "oauth", "signature")
	p := decodePolicy(t, rec.Body.String())
	if p.Name != "warehouse" || p.OAuth == nil || p.OAuth.ClientID != "c1" || !reflect.DeepEqual(p.OAuth.Scopes, []string{"events:write", "events:read"}) ||
		p.Signature == nil || p.Signature.PublicKey == "" {
		t.Fatalf("created: %+v", p)
	}
	if _, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(p.Signature.PublicKey); err != nil {
		t.Errorf("public key does not parse with sendgrid-go: %v", err)
	}
	stored, _, _ := st.SecurityPolicy(context.Background(), "acme", p.ID)
	if stored.OAuth == nil || stored.OAuth.ClientSecret != secret || stored.SignedKey == nil {
		t.Fatalf("stored %+v", stored)
	}
	for _, path := range []string{base, base + "/" + p.ID} {
		rec := do(t, h, "GET", path, key, "")
		if rec.Code != 200 || strings.Contains(rec.Body.String(), secret) || !strings.Contains(rec.Body.String(), p.Signature.PublicKey) {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	// A signature-only policy has no oauth in its answer.
	rec = do(t, h, "POST", base, key, `{"name":"signed only","signature":{"enabled":true}}`)
	if rec.Code != 201 {
		t.Fatalf("signature-only: %d %s", rec.Code, rec.Body)
	}
	decodeExact(t, mustJSON(t, decodeExact(t, rec.Body.String(), "policy")["policy"]), "id", "name", "signature")
	rec = do(t, h, "GET", base, key, "")
	var list struct {
		Policies []policyView `json:"policies"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Policies) != 2 || list.Policies[0].ID != p.ID {
		t.Errorf("list: %s", rec.Body)
	}

	// PATCH: new scopes without the secret keep it; signing off.
	rec = do(t, h, "PATCH", base+"/"+p.ID, key, `{"oauth":{"scopes":["events:write"]},"signature":{"enabled":false}}`)
	if rec.Code != 200 {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	if got := decodePolicy(t, rec.Body.String()); got.Signature != nil || got.OAuth == nil || !reflect.DeepEqual(got.OAuth.Scopes, []string{"events:write"}) {
		t.Errorf("after patch: %s", rec.Body)
	}
	if stored, _, _ := st.SecurityPolicy(context.Background(), "acme", p.ID); stored.OAuth.ClientSecret != secret || stored.SignedKey != nil {
		t.Errorf("after patch stored %+v", stored)
	}
	// Removing the last part is refused.
	rec = do(t, h, "PATCH", base+"/"+p.ID, key, `{"oauth":null}`)
	if _, msg := sendGridError(t, rec); rec.Code != 400 || !strings.Contains(msg, "needs oauth or signature") {
		t.Errorf("policy with nothing: %d %s", rec.Code, rec.Body)
	}

	// A webhook uses it; the policy is deleted only with force, which
	// detaches it.
	rec = do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://hooks.example.com/p","security_policy":"`+p.ID+`"}`)
	if rec.Code != 201 {
		t.Fatalf("webhook with a policy: %d %s", rec.Code, rec.Body)
	}
	wm := decodeExact(t, rec.Body.String(), webhookKeys("created_date", "updated_date", "security_policy")...)
	if wm["security_policy"] != p.ID {
		t.Errorf("webhook: %s", rec.Body)
	}
	rec = do(t, h, "DELETE", base+"/"+p.ID, key, "")
	if field, msg := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "force" || !strings.Contains(msg, wm["id"].(string)) {
		t.Errorf("delete in use: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "DELETE", base+"/"+p.ID+"?force=true", key, "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"policy":null}` {
		t.Fatalf("delete with force: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", base+"/"+p.ID, key, ""); rec.Code != 404 {
		t.Errorf("get after delete: %d", rec.Code)
	}
	if w, _, _ := st.Webhook(context.Background(), "acme", wm["id"].(string)); w.SecurityPolicy != "" {
		t.Errorf("the webhook still uses the deleted policy %q", w.SecurityPolicy)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSecurityPolicyErrors: bad bodies answer 400 naming the field.
func TestSecurityPolicyErrors(t *testing.T) {
	h, _, key, _, _ := webhookServer(t)
	const base = "/v3/user/webhooks/security/policies"
	for _, tc := range []struct{ name, body, field string }{
		{"no name", `{"signature":{"enabled":true}}`, "name"},
		{"empty name", `{"name":" ","signature":{"enabled":true}}`, "name"},
		{"neither oauth nor signature", `{"name":"x"}`, ""},
		{"signature off only", `{"name":"x","signature":{"enabled":false}}`, ""},
		{"signature without enabled", `{"name":"x","signature":{}}`, "signature.enabled"},
		{"signature not an object", `{"name":"x","signature":true}`, "signature"},
		{"oauth without a secret", `{"name":"x","oauth":{"client_id":"c","token_url":"https://a.example.com/t"}}`, "oauth.client_secret"},
		{"oauth without a token url", `{"name":"x","oauth":{"client_id":"c","client_secret":"s"}}`, "oauth.token_url"},
		{"oauth empty", `{"name":"x","oauth":{}}`, "oauth"},
		{"oauth private token url", `{"name":"x","oauth":{"client_id":"c","client_secret":"s","token_url":"http://10.0.0.1/t"}}`, "oauth.token_url"},
		{"oauth unknown field", `{"name":"x","oauth":{"client":"c"}}`, "oauth.client"},
		{"scope with a space", `{"name":"x","oauth":{"client_id":"c","client_secret":"s","token_url":"https://a.example.com/t","scopes":["a b"]}}`, "oauth.scopes"},
		{"scopes of the wrong type", `{"name":"x","oauth":{"client_id":"c","client_secret":"s","token_url":"https://a.example.com/t","scopes":"a"}}`, "oauth"},
		{"unknown field", `{"name":"x","signature":{"enabled":true},"sig":1}`, "sig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, "POST", base, key, tc.body)
			field, msg := sendGridError(t, rec)
			got := ""
			if field != nil {
				got = *field
			}
			if rec.Code != 400 || got != tc.field {
				t.Errorf("%d field %q (%s), want 400 on %q", rec.Code, got, msg, tc.field)
			}
		})
	}
	// A webhook may use only a policy of its account that exists.
	rec := do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"https://hooks.example.com/q","security_policy":"5b0f6a3e-3c2b-4b8e-9d8e-1f2a3b4c5d6e"}`)
	if field, _ := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "security_policy" {
		t.Errorf("unknown policy: %d %s", rec.Code, rec.Body)
	}
}

// TestSecurityPolicyTenancy: another account's policy answers 404 on
// every route, is not listed, cannot be used by a webhook, and its
// requests change nothing.
func TestSecurityPolicyTenancy(t *testing.T) {
	h, st, keyA, keyB, _ := webhookServer(t)
	const base = "/v3/user/webhooks/security/policies"
	rec := do(t, h, "POST", base, keyA, `{"name":"acme's","signature":{"enabled":true}}`)
	p := decodePolicy(t, rec.Body.String())
	before, _, _ := st.SecurityPolicy(context.Background(), "acme", p.ID)
	for _, r := range []struct{ method, path, body string }{
		{"GET", base + "/" + p.ID, ""},
		{"PATCH", base + "/" + p.ID, `{"name":"mine now"}`},
		{"DELETE", base + "/" + p.ID + "?force=true", ""},
	} {
		rec := do(t, h, r.method, r.path, keyB, r.body)
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), "Invalid id provided.") {
			t.Errorf("globex %s %s: %d %s, want 404", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if rec := do(t, h, "GET", base, keyB, ""); strings.TrimSpace(rec.Body.String()) != `{"policies":[]}` {
		t.Errorf("globex's list: %s", rec.Body)
	}
	rec = do(t, h, "POST", "/v3/user/webhooks/event/settings", keyB, `{"url":"https://hooks.example.com/b","security_policy":"`+p.ID+`"}`)
	if field, _ := sendGridError(t, rec); rec.Code != 400 || field == nil || *field != "security_policy" {
		t.Errorf("globex using acme's policy: %d %s", rec.Code, rec.Body)
	}
	after, _, _ := st.SecurityPolicy(context.Background(), "acme", p.ID)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("acme's policy changed through globex's requests")
	}
}

// TestWebhookTestDeliveryUsesPolicy: a test delivery of a webhook that
// uses a policy gets its token with the policy's credentials and scopes
// and signs with the policy's key.
func TestWebhookTestDeliveryUsesPolicy(t *testing.T) {
	h, st, key, _, _ := webhookServer(t)
	as := oauthtest.Start(t, "policy-client", "policy-secret", time.Hour)
	rcv := &receiver{status: 200}
	srv := httptest.NewServer(as.Protect(rcv))
	defer srv.Close()
	st.allow(srv)
	st.mu.Lock()
	st.guard.Allow = append(st.guard.Allow, safedial.RuleFor(netip.MustParseAddrPort(as.HTTP.Listener.Addr().String())))
	st.mu.Unlock()
	rec := do(t, h, "POST", "/v3/user/webhooks/security/policies", key, `{"name":"p","oauth":{"client_id":"policy-client","client_secret":"policy-secret",`+
		`"token_url":"`+as.TokenURL+`","scopes":["events:write"]},"signature":{"enabled":true}}`)
	p := decodePolicy(t, rec.Body.String())
	rec = do(t, h, "POST", "/v3/user/webhooks/event/settings", key, `{"url":"`+srv.URL+`/e","bounce":true,"security_policy":"`+p.ID+`"}`)
	var wh map[string]any
	json.Unmarshal(rec.Body.Bytes(), &wh)
	rec = do(t, h, "POST", "/v3/user/webhooks/event/test", key, `{"id":"`+wh["id"].(string)+`"}`)
	if rec.Code != 204 {
		t.Fatalf("test: %d %s", rec.Code, rec.Body)
	}
	if got := as.Scopes(); len(got) != 1 || got[0] != "events:write" {
		t.Errorf("token request scopes %q, want the policy's", got)
	}
	rcv.mu.Lock()
	body, head := rcv.bodies[0], rcv.heads[0]
	rcv.mu.Unlock()
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(p.Signature.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := eventwebhook.VerifySignature(pub, body, head.Get(eventwebhook.VerificationHTTPHeader), head.Get(eventwebhook.TimestampHTTPHeader)); !ok || err != nil {
		t.Errorf("the test is not signed with the policy's key: %v %v", ok, err)
	}
}
