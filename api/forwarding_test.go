package api

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// fakeForwarding keeps settings per account in memory, with the time of
// each write.
type fakeForwarding struct {
	mu     sync.Mutex
	byAcct map[string]accounts.ForwardBounce
	writes int
	at     time.Time
	err    error
}

func (f *fakeForwarding) ForwardBounce(ctx context.Context, account string) (accounts.ForwardBounce, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byAcct[account], f.err
}

func (f *fakeForwarding) SetForwardBounce(ctx context.Context, account string, fb accounts.ForwardBounce, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byAcct == nil {
		f.byAcct = map[string]accounts.ForwardBounce{}
	}
	f.byAcct[account] = fb
	f.writes++
	f.at = at
	return nil
}

func forwardBody(t *testing.T, body string) forwardBounceBody {
	t.Helper()
	var out forwardBounceBody
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || !strings.Contains(body, `"email":`) || !strings.Contains(body, `"enabled":`) {
		t.Fatalf("body %q: not {enabled, email} (%v)", body, err)
	}
	return out
}

func TestForwardBounceSetting(t *testing.T) {
	acme, ka := testKey(t, "acme", false)
	globex, kb := testKey(t, "globex", false)
	reader, kr := testKey(t, "acme", false, "mail_settings.forward_bounce.read")
	other, ko := testKey(t, "acme", false, "suppression.read")
	store := &fakeForwarding{}
	at := time.Unix(1764201600, 0)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{ka, kb, kr, ko}, Forwarding: store, Now: func() time.Time { return at }, RateLimit: 1000})
	const path = "/v3/mail_settings/forward_bounce"

	rec := do(t, h, "GET", path, acme, "")
	if rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{}) {
		t.Fatalf("never set: %d %s, want {enabled:false, email:\"\"}", rec.Code, rec.Body)
	}

	rec = do(t, h, "PATCH", path, acme, `{"enabled":true,"email":" Ops@Acme.example "}`)
	if rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{true, "Ops@Acme.example"}) {
		t.Fatalf("enable: %d %s", rec.Code, rec.Body)
	}
	if store.byAcct["acme"] != (accounts.ForwardBounce{AccountID: "acme", Enabled: true, Email: "Ops@Acme.example"}) || !store.at.Equal(at) {
		t.Errorf("stored %+v at %v", store.byAcct["acme"], store.at)
	}

	// Tenancy: globex sees and changes only its own setting.
	if rec := do(t, h, "GET", path, globex, ""); rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{}) {
		t.Errorf("globex reads %d %s, want its own empty setting", rec.Code, rec.Body)
	}
	if rec := do(t, h, "PATCH", path, globex, `{"enabled":false,"email":"x@globex.example"}`); rec.Code != 200 {
		t.Fatalf("globex patch: %d %s", rec.Code, rec.Body)
	}
	if store.byAcct["acme"] != (accounts.ForwardBounce{AccountID: "acme", Enabled: true, Email: "Ops@Acme.example"}) {
		t.Errorf("globex's PATCH changed acme's setting: %+v", store.byAcct["acme"])
	}

	// Partial updates keep the other field.
	if rec := do(t, h, "PATCH", path, acme, `{"enabled":false}`); rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{false, "Ops@Acme.example"}) {
		t.Errorf("disable only: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "PATCH", path, acme, `{"email":"new@acme.example"}`); rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{false, "new@acme.example"}) {
		t.Errorf("address only: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "PATCH", path, acme, `{"email":null}`); rec.Code != 200 || forwardBody(t, rec.Body.String()) != (forwardBounceBody{false, ""}) {
		t.Errorf("clear the address: %d %s", rec.Code, rec.Body)
	}
	writes := store.writes
	if rec := do(t, h, "PATCH", path, acme, `{}`); rec.Code != 200 || store.writes != writes {
		t.Errorf("empty patch: %d %s, %d writes (want none)", rec.Code, rec.Body, store.writes-writes)
	}

	// Scopes.
	if rec := do(t, h, "GET", path, reader, ""); rec.Code != 200 {
		t.Errorf("read scope GET: %d", rec.Code)
	}
	if rec := do(t, h, "PATCH", path, reader, `{"enabled":false}`); rec.Code != 403 {
		t.Errorf("read scope PATCH: %d, want 403", rec.Code)
	}
	if rec := do(t, h, "GET", path, other, ""); rec.Code != 403 {
		t.Errorf("unrelated scope GET: %d, want 403", rec.Code)
	}
	if rec := do(t, h, "GET", path, "", ""); rec.Code != 401 {
		t.Errorf("no key: %d, want 401", rec.Code)
	}

	// Bad input: SendGrid's error shape, the field named, nothing written.
	writes = store.writes
	for _, tc := range []struct{ name, body, field string }{
		{"enable without address", `{"enabled":true,"email":""}`, "email"},
		{"enable with none stored", `{"enabled":true}`, "email"},
		{"not an address", `{"enabled":true,"email":"not-an-address"}`, "email"},
		{"display name", `{"enabled":true,"email":"Ops <ops@acme.example>"}`, "email"},
		{"two addresses", `{"enabled":true,"email":"a@acme.example, b@acme.example"}`, "email"},
		{"header injection", `{"enabled":true,"email":"a@acme.example\r\nBcc: x@evil.example"}`, "email"},
		{"no dot in domain", `{"enabled":true,"email":"ops@localhost"}`, "email"},
		{"non-ASCII", `{"enabled":true,"email":"öps@acme.example"}`, "email"},
		{"too long", `{"enabled":true,"email":"` + strings.Repeat("a", 250) + `@acme.example"}`, "email"},
		{"email a number", `{"email":5}`, "email"},
		{"enabled a string", `{"enabled":"yes","email":"a@acme.example"}`, "enabled"},
		{"enabled null", `{"enabled":null}`, "enabled"},
		{"unknown field", `{"enabled":true,"email":"a@acme.example","emails":["b@acme.example"]}`, "emails"},
		{"not JSON", `{"enabled":`, ""},
		{"not an object", `null`, ""},
		{"empty body", ``, ""},
		{"trailing data", `{"enabled":false}{}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, "PATCH", path, acme, tc.body)
			if rec.Code != 400 {
				t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
			}
			field, msg := sendGridError(t, rec)
			got := ""
			if field != nil {
				got = *field
			}
			if got != tc.field || msg == "" {
				t.Errorf("field %q message %q, want field %q", got, msg, tc.field)
			}
		})
	}
	if store.writes != writes {
		t.Errorf("bad requests wrote %d settings", store.writes-writes)
	}

	// A store failure is a 500 without details.
	store.err = errors.New("clickhouse: connection refused")
	rec = do(t, h, "GET", path, acme, "")
	if _, msg := sendGridError(t, rec); rec.Code != 500 || msg != "internal error" {
		t.Errorf("store failure: %d %q", rec.Code, msg)
	}
}

func TestForwardBounceUnavailable(t *testing.T) {
	key, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	for _, method := range []string{"GET", "PATCH"} {
		rec := do(t, h, method, "/v3/mail_settings/forward_bounce", key, `{"enabled":false}`)
		if rec.Code != 404 {
			t.Errorf("%s without a ForwardingStore: %d, want 404", method, rec.Code)
		}
		sendGridError(t, rec)
	}
}
