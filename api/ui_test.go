package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
)

// browser is a cookie-carrying client of h, as the dashboard page is.
type browser struct {
	t      *testing.T
	h      http.Handler
	cookie *http.Cookie
	csrf   string
}

// req sends a request with the session cookie (if any) and, when csrf is
// not "", that X-CSRF-Token header.
func (b *browser) req(method, path, csrf, body string) *httptest.ResponseRecorder {
	b.t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if b.cookie != nil {
		r.AddCookie(b.cookie)
	}
	if csrf != "" {
		r.Header.Set(csrfHeader, csrf)
	}
	return doRequest(b.t, b.h, r)
}

func loginRequest(key string) *http.Request {
	r := httptest.NewRequest("POST", "/ui/session", strings.NewReader(`{"api_key":"`+key+`"}`))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// login logs in with key and keeps the cookie and token; it fails unless
// that gives 201.
func (b *browser) login(key string) sessionInfo {
	b.t.Helper()
	rec := doRequest(b.t, b.h, loginRequest(key))
	if rec.Code != 201 {
		b.t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var si sessionInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &si); err != nil {
		b.t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie {
			b.cookie = c
		}
	}
	if b.cookie == nil {
		b.t.Fatal("login set no session cookie")
	}
	b.csrf = si.CSRFToken
	return si
}

func TestLoginSetsASafeCookie(t *testing.T) {
	token, k := testKey(t, "acme", false, "suppression.read")
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Now: c.now})
	b := &browser{t: t, h: h}
	si := b.login(token)
	if si.Account != "acme" || si.KeyID != k.KeyID || len(si.Scopes) != 1 || len(si.CSRFToken) < 40 {
		t.Errorf("session %+v", si)
	}
	if want := c.now().Add(sessionIdle).Unix(); si.ExpiresAt != want {
		t.Errorf("expires_at %d, want %d (idle timeout)", si.ExpiresAt, want)
	}
	ck := b.cookie
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure || len(ck.Value) < 40 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP, a long random value", ck)
	}
	if ck.Value == token || strings.Contains(ck.Value, k.KeyID) {
		t.Error("the cookie carries the key")
	}
	other := (&browser{t: t, h: h}).login(token)
	if other.CSRFToken == si.CSRFToken {
		t.Error("two sessions share a CSRF token")
	}

	r := loginRequest(token)
	r.TLS = &tls.ConnectionState{}
	rec := doRequest(t, h, r)
	if cs := rec.Result().Cookies(); rec.Code != 201 || len(cs) != 1 || !cs[0].Secure {
		t.Errorf("login over TLS: %d, cookies %v: want a Secure cookie", rec.Code, cs)
	}
}

func TestLoginRefusals(t *testing.T) {
	token, k := testKey(t, "acme", false)
	revoked, kr := testKey(t, "acme", true)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k, kr}})
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
	}{
		{"wrong secret", func() *http.Request { return loginRequest(token[:len(token)-2] + "xx") }, 401},
		{"not a key", func() *http.Request { return loginRequest("hello") }, 401},
		{"revoked key", func() *http.Request { return loginRequest(revoked) }, 401},
		{"empty key", func() *http.Request { return loginRequest("") }, 400},
		{"a form, not JSON", func() *http.Request {
			r := httptest.NewRequest("POST", "/ui/session", strings.NewReader("api_key="+token))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 400},
		{"another site's page", func() *http.Request {
			r := loginRequest(token)
			r.Header.Set("Origin", "https://evil.example")
			return r
		}, 403},
		{"a cross-site fetch", func() *http.Request {
			r := loginRequest(token)
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := doRequest(t, h, tc.req())
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			sendGridError(t, rec)
			if len(rec.Result().Cookies()) != 0 {
				t.Error("a refused login set a cookie")
			}
		})
	}
	// The same origin is fine.
	r := loginRequest(token)
	r.Header.Set("Origin", "http://example.com") // httptest's Host
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	rec := doRequest(t, h, r)
	if rec.Code != 201 {
		t.Errorf("same-origin login: %d %s", rec.Code, rec.Body)
	}
}

// TestSessionActsAsItsKey: reads need only the cookie; every state change
// needs the session's CSRF token (403 in SendGrid's shape without it, and
// nothing is written); the key's scopes apply.
func TestSessionActsAsItsKey(t *testing.T) {
	token, k := testKey(t, "acme", false)
	readOnly, kr := testKey(t, "acme", false, "suppression.read")
	st := &fakeStore{}
	h := NewServer(Config{Store: st, Keys: fakeKeys{k, kr}, RateLimit: 1000})
	b := &browser{t: t, h: h}
	b.login(token)

	if rec := b.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 200 {
		t.Fatalf("GET with the session: %d %s", rec.Code, rec.Body)
	}
	if rec := b.req("GET", "/v3/suppression/bounces", "", ""); rec.Header().Get("X-RateLimit-Limit") != "1000" {
		t.Errorf("no rate-limit headers on a session request: %v", rec.Header())
	}
	wrong := "x" + b.csrf[1:]
	if wrong == b.csrf { // one token in 64 starts with x
		wrong = "y" + b.csrf[1:]
	}
	for name, csrf := range map[string]string{"no token": "", "wrong token": wrong, "short token": b.csrf[:10]} {
		rec := b.req("DELETE", "/v3/suppression/bounces/kim%40example.com", csrf, "")
		if rec.Code != 403 {
			t.Errorf("%s: %d, want 403", name, rec.Code)
			continue
		}
		if _, msg := sendGridError(t, rec); !strings.Contains(msg, "CSRF") {
			t.Errorf("%s: message %q", name, msg)
		}
	}
	if len(st.changes) != 0 {
		t.Fatalf("refused deletes wrote %+v", st.changes)
	}
	if rec := b.req("DELETE", "/v3/suppression/bounces/kim%40example.com", b.csrf, ""); rec.Code != 204 {
		t.Fatalf("delete with the token: %d %s", rec.Code, rec.Body)
	}
	if len(st.changes) != 1 || st.changes[0].EmailNorm != "kim@example.com" {
		t.Errorf("changes %+v", st.changes)
	}
	other := &browser{t: t, h: h}
	other.login(token)
	if rec := b.req("DELETE", "/v3/suppression/bounces/lee%40example.com", other.csrf, ""); rec.Code != 403 {
		t.Errorf("another session's token: %d, want 403", rec.Code)
	}

	// A Bearer key needs no token, with or without a cookie beside it.
	r := httptest.NewRequest("DELETE", "/v3/suppression/bounces/lee%40example.com", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.AddCookie(b.cookie)
	rec := doRequest(t, h, r)
	if rec.Code != 204 {
		t.Errorf("Bearer with a cookie: %d", rec.Code)
	}
	// A cookie that is not a session.
	stranger := &browser{t: t, h: h, cookie: &http.Cookie{Name: sessionCookie, Value: "made-up"}}
	if rec := stranger.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 401 {
		t.Errorf("made-up cookie: %d, want 401", rec.Code)
	}

	ro := &browser{t: t, h: h}
	ro.login(readOnly)
	if rec := ro.req("DELETE", "/v3/suppression/bounces/kim%40example.com", ro.csrf, ""); rec.Code != 403 {
		t.Errorf("read-only key's session deleting: %d, want 403 (scopes apply)", rec.Code)
	} else if _, msg := sendGridError(t, rec); msg != "access forbidden" {
		t.Errorf("read-only: message %q", msg)
	}
}

func TestSessionRateLimitIsTheKeys(t *testing.T) {
	token, k := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Now: c.now, RateLimit: 3})
	b := &browser{t: t, h: h}
	b.login(token) // takes one token
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 200 {
		t.Fatalf("Bearer: %d", rec.Code)
	}
	if rec := b.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 200 {
		t.Fatalf("session: %d", rec.Code)
	}
	if rec := b.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 429 {
		t.Errorf("fourth request of the key in the same instant, by session: %d, want 429", rec.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	token, k := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Now: c.now, RateLimit: 1000})

	idle := &browser{t: t, h: h}
	idle.login(token)
	c.add(sessionIdle - time.Second)
	if rec := idle.req("GET", "/ui/session", "", ""); rec.Code != 200 {
		t.Fatalf("just before the idle timeout: %d", rec.Code)
	}
	c.add(sessionIdle - time.Second) // used a moment ago: still valid
	if rec := idle.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 200 {
		t.Fatalf("idle less than the timeout since the last request: %d", rec.Code)
	}
	c.add(sessionIdle)
	rec := idle.req("GET", "/v3/suppression/bounces", "", "")
	if rec.Code != 401 {
		t.Fatalf("idle for the timeout: %d, want 401", rec.Code)
	}
	if _, msg := sendGridError(t, rec); !strings.Contains(msg, "log in again") {
		t.Errorf("message %q", msg)
	}

	busy := &browser{t: t, h: h}
	busy.login(token)
	step := sessionIdle / 2
	for used := step; used < sessionMaxAge; used += step {
		c.add(step)
		if rec := busy.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 200 {
			t.Fatalf("busy session after %v: %d", used, rec.Code)
		}
	}
	c.add(step) // sessionMaxAge after login
	if rec := busy.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 401 {
		t.Errorf("busy session past its maximum age: %d, want 401", rec.Code)
	}
}

func TestLogout(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1000})
	b := &browser{t: t, h: h}
	b.login(token)
	if rec := b.req("DELETE", "/ui/session", "", ""); rec.Code != 403 {
		t.Fatalf("logout without the token: %d, want 403 (another site must not log the user out)", rec.Code)
	}
	rec := b.req("DELETE", "/ui/session", b.csrf, "")
	if rec.Code != 204 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	if cs := rec.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("logout cookies %v: want the session cookie cleared", cs)
	}
	for _, path := range []string{"/ui/session", "/v3/suppression/bounces"} {
		if rec := b.req("GET", path, "", ""); rec.Code != 401 {
			t.Errorf("GET %s after logout: %d, want 401", path, rec.Code)
		}
	}
	if rec := b.req("DELETE", "/ui/session", "", ""); rec.Code != 204 {
		t.Errorf("logout again: %d, want 204", rec.Code)
	}
}

// TestRevokedKeyEndsSession: the session stops working within the key
// refresh period of the key's revocation, and does not come back.
func TestRevokedKeyEndsSession(t *testing.T) {
	token, k := testKey(t, "acme", false)
	keys := &mutableKeys{}
	keys.set(k)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: keys, Now: c.now, KeyRefresh: 5 * time.Second, RateLimit: 1000})
	b := &browser{t: t, h: h}
	b.login(token)
	k.Revoked = true
	keys.set(k)
	c.add(5 * time.Second)
	if rec := b.req("GET", "/v3/suppression/bounces", "", ""); rec.Code != 401 {
		t.Fatalf("a key refresh after revocation: %d, want 401", rec.Code)
	}
	k.Revoked = false
	keys.set(k)
	c.add(5 * time.Second)
	if rec := b.req("GET", "/ui/session", "", ""); rec.Code != 401 {
		t.Errorf("the key un-revoked: the ended session answers %d, want 401", rec.Code)
	}
}

func TestDashboardPageHeaders(t *testing.T) {
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{}})
	rec := do(t, h, "GET", "/ui/", "", "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	if rec.Header().Get("X-Frame-Options") != "DENY" {
		t.Error("the page can be framed")
	}
	body := rec.Body.String()
	if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "<script>") {
		t.Errorf("the page loads from elsewhere or has inline script:\n%s", body)
	}
	etag := rec.Header().Get("ETag")
	r := httptest.NewRequest("GET", "/ui/", nil)
	r.Header.Set("If-None-Match", etag)
	rec = doRequest(t, h, r)
	if rec.Code != 304 {
		t.Errorf("If-None-Match: %d, want 304", rec.Code)
	}
	if rec := do(t, h, "GET", "/ui", "", ""); rec.Code != 302 || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	for name := range uiFiles {
		if !strings.HasPrefix(name, "assets/") {
			continue
		}
		if rec := do(t, h, "GET", "/ui/"+name, "", ""); rec.Code != 200 || rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("GET /ui/%s: %d", name, rec.Code)
		}
	}
	for _, name := range []string{"assets/app.js", "assets/app.css"} {
		if _, ok := uiFiles[name]; !ok {
			t.Errorf("%s is not built into api/uiassets (make ui)", name)
		}
	}
	if rec := do(t, h, "GET", "/ui/assets/nope.js", "", ""); rec.Code != 404 {
		t.Errorf("missing asset: %d", rec.Code)
	}
}

type fakeDashboard struct {
	from, to  time.Time
	unmatched enrich.UnmatchedQuery
}

func (f *fakeDashboard) UnmatchedTexts(ctx context.Context, q enrich.UnmatchedQuery) (enrich.UnmatchedReport, error) {
	f.unmatched = q
	return enrich.UnmatchedReport{Total: 5, Unmatched: 2, Groups: []enrich.UnmatchedText{{Text: "<n> zorgle", ReplyCode: "550", Count: 2, Unclassified: 2,
		Providers: []string{"other"}, Rules: []string{}, Example: "550 zorgle", At: time.Unix(1764201600, 0).UTC()}}}, nil
}

func (f *fakeDashboard) BounceReasons(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.ReasonCount, error) {
	f.from, f.to = from, to
	rs := []analytics.ReasonCount{
		{ReasonCode: "user_unknown", Classification: "Invalid Address", BounceType: "hard", Bounces: 7, Example: "550 5.1.1 no such user"},
		{ReasonCode: "ip_blocked", Classification: "Reputation", BounceType: "soft", Blocks: 3, Example: "554 blocked"},
	}
	return rs[:min(limit, len(rs))], nil
}

func (f *fakeDashboard) TopDomains(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.DomainCounts, error) {
	return []analytics.DomainCounts{{Domain: "gmail.com", Counts: analytics.StatCounts{Processed: 10, DerivedDrops: 1, Drops: 2, Delivered: 8, Bounces: 1}}}, nil
}

func TestDashboardRoutes(t *testing.T) {
	token, k := testKey(t, "acme", false)
	noStats, kn := testKey(t, "acme", false, "suppression.read")
	d := &fakeDashboard{}
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k, kn}, Now: c.now, Dashboard: d, RateLimit: 1000})
	rec := do(t, h, "GET", "/bouncer/v1/stats/bounce_reasons?start_date=2025-11-01&end_date=2025-11-27&limit=1", token, "")
	if want := `[{"reason_code":"user_unknown","classification":"Invalid Address","bounce_type":"hard","bounces":7,"blocks":0,"example":"550 5.1.1 no such user"}]`; rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("bounce_reasons: %d %s\nwant %s", rec.Code, rec.Body, want)
	}
	if d.from != time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC) || d.to != time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC) {
		t.Errorf("range [%v, %v): want the end date's whole day", d.from, d.to)
	}
	rec = do(t, h, "GET", "/bouncer/v1/classify/unmatched?start_date=2025-11-01&end_date=2025-11-02&limit=5", token, "")
	if want := `{"groups":[{"text":"\u003cn\u003e zorgle","reply_code":"550","status":"","count":2,"unclassified":2,"providers":["other"],"rules":[],"example":"550 zorgle","at":"2025-11-27T00:00:00Z"}],"total":5,"unmatched":2,"unknown":0}`; rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("classify/unmatched: %d %s\nwant %s", rec.Code, rec.Body, want)
	}
	if u := d.unmatched; u.Account != "acme" || u.Limit != 5 || !u.Since.Equal(time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)) || !u.Until.Equal(time.Date(2025, 11, 3, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("classify/unmatched asked %+v: want acme's 2025-11-01 and 02, 5 groups", u)
	}
	rec = do(t, h, "GET", "/bouncer/v1/stats/top_domains?start_date=2025-11-01", token, "")
	var doms []struct {
		Domain  string
		Metrics analytics.ProviderMetrics
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doms); err != nil || rec.Code != 200 || len(doms) != 1 {
		t.Fatalf("top_domains: %d %s", rec.Code, rec.Body)
	}
	if m := doms[0].Metrics; doms[0].Domain != "gmail.com" || m.Processed != 9 || m.Requests != 11 || m.Delivered != 8 || m.Drops != 2 {
		t.Errorf("top_domains: %+v: want SendGrid's metrics (processed 9, requests 11)", doms[0])
	}
	for _, tc := range []struct{ path, field string }{
		{"/bouncer/v1/stats/top_domains", "start_date"},
		{"/bouncer/v1/stats/top_domains?start_date=2025-11-01&limit=101", "limit"},
		{"/bouncer/v1/stats/bounce_reasons?start_date=2025-11-02&end_date=2025-11-01", "end_date"},
	} {
		rec := do(t, h, "GET", tc.path, token, "")
		if f, _ := sendGridError(t, rec); rec.Code != 400 || f == nil || *f != tc.field {
			t.Errorf("%s: %d %s, want 400 on %s", tc.path, rec.Code, rec.Body, tc.field)
		}
	}
	if rec := do(t, h, "GET", "/bouncer/v1/stats/top_domains?start_date=2025-11-01", noStats, ""); rec.Code != 403 {
		t.Errorf("key without stats.read: %d, want 403", rec.Code)
	}
	off := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	if rec := do(t, off, "GET", "/bouncer/v1/stats/bounce_reasons?start_date=2025-11-01", token, ""); rec.Code != 404 {
		t.Errorf("without a DashboardStore: %d, want 404", rec.Code)
	}
}

// TestSessionsAreBounded: at the limit, ended sessions go first, then the
// one closest to its end.
func TestSessionsAreBounded(t *testing.T) {
	c := &clock{t: time.Unix(1764201600, 0)}
	s := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{}, Now: c.now}).(*server)
	st := s.sessions()
	now := c.now()
	ids := make([]string, maxSessions)
	for i := range ids {
		// Session i was last used i milliseconds ago; the first two have ended.
		seen := now.Add(-time.Duration(i) * time.Millisecond)
		if i < 2 {
			seen = now.Add(-sessionIdle - time.Second)
		}
		id, err := addSession(st, &session{account: fmt.Sprint(i), created: seen, seen: seen}, now)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	newest, _ := addSession(st, &session{account: "n1", created: now, seen: now}, now)
	if len(st.byID) != maxSessions-1 || has(st, ids[0]) || has(st, ids[1]) || !has(st, newest) {
		t.Fatalf("after the limit: %d sessions; ended ones kept: %v %v", len(st.byID), has(st, ids[0]), has(st, ids[1]))
	}
	addSession(st, &session{account: "n2", created: now, seen: now}, now)
	last, _ := addSession(st, &session{account: "n3", created: now, seen: now}, now)
	if len(st.byID) != maxSessions || has(st, ids[maxSessions-1]) || !has(st, ids[2]) || !has(st, last) {
		t.Errorf("full: %d sessions; the one closest to its end (used longest ago) is kept: %v", len(st.byID), has(st, ids[maxSessions-1]))
	}
	if other := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{}}).(*server); other.sessions() == st {
		t.Error("two servers share their sessions")
	}
}

// TestLoginsOfOneAccountEndNoOtherAccountsSession: an account that logs
// in more often than the server keeps sessions ends only its own oldest
// sessions, never another account's (issue 16, item 6: 10,100 logins by one
// account used to end another's).
func TestLoginsOfOneAccountEndNoOtherAccountsSession(t *testing.T) {
	victimKey, vk := testKey(t, "victim", false)
	hostileKey, hk := testKey(t, "hostile", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{vk, hk}, Now: c.now, RateLimit: 1e9})
	victim := &browser{t: t, h: h}
	victim.login(victimKey)
	c.add(time.Second) // the victim's session is now the oldest
	first := &browser{t: t, h: h}
	first.login(hostileKey)
	var last *http.Cookie
	for range maxSessions + 1 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, loginRequest(hostileKey))
		if rec.Code != 201 {
			t.Fatalf("login: %d %s", rec.Code, rec.Body)
		}
		last = rec.Result().Cookies()[0]
	}
	if rec := victim.req("GET", "/ui/session", "", ""); rec.Code != 200 {
		t.Fatalf("the victim's session after %d logins of another account: %d %s", maxSessions+2, rec.Code, rec.Body)
	}
	if rec := first.req("GET", "/ui/session", "", ""); rec.Code != 401 {
		t.Errorf("the hostile account's first session: %d, want 401 (it keeps at most %d)", rec.Code, maxAccountSessions)
	}
	newest := &browser{t: t, h: h, cookie: last}
	if rec := newest.req("GET", "/ui/session", "", ""); rec.Code != 200 {
		t.Errorf("the hostile account's newest session: %d", rec.Code)
	}
}

// TestFullSessionStoreTakesFromTheLargestAccount: with every place taken,
// a login ends a session of an account holding the most sessions, not the
// oldest session of an account with fewer.
func TestFullSessionStoreTakesFromTheLargestAccount(t *testing.T) {
	now := time.Unix(1764201600, 0)
	st := newSessionStore()
	st.total, st.perAccount = 6, 3
	add := func(account string, age time.Duration) string {
		t.Helper()
		at := now.Add(-age)
		id, err := addSession(st, &session{account: account, created: at, seen: at}, now)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	small := add("small", 10*time.Minute) // the oldest of all
	var big []string
	for i := range 3 {
		big = append(big, add("big", time.Duration(5-i)*time.Minute))
	}
	mid := []string{add("mid", time.Minute), add("mid", 0)}
	newcomer := add("new", 0) // full: "big" (3 sessions) gives its oldest
	for name, id := range map[string]string{"small": small, "mid 0": mid[0], "mid 1": mid[1], "big 1": big[1], "big 2": big[2], "new": newcomer} {
		if !has(st, id) {
			t.Errorf("session %s was dropped", name)
		}
	}
	if has(st, big[0]) {
		t.Error("the largest account's oldest session was kept")
	}
	if len(st.byID) != 6 || len(st.byAccount["big"]) != 2 {
		t.Errorf("%d sessions, %d of the largest account", len(st.byID), len(st.byAccount["big"]))
	}
	st.end(context.Background(), newcomer)
	if _, ok := st.byAccount["new"]; ok || len(st.byID) != 5 {
		t.Errorf("logout left %d sessions, account entry kept: %v", len(st.byID), ok)
	}
}

// TestSessionUsedConcurrently: one session used from several requests at
// once (run with -race), while other sessions log in and out.
func TestSessionUsedConcurrently(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1e6})
	b := &browser{t: t, h: h}
	b.login(token)
	var wg sync.WaitGroup
	codes := make(chan int, 400)
	for range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 50 {
				for _, path := range []string{"/ui/session", "/v3/suppression/bounces"} {
					r := httptest.NewRequest("GET", path, nil)
					r.AddCookie(b.cookie)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					codes <- rec.Code
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 10 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, loginRequest(token))
				r := httptest.NewRequest("DELETE", "/ui/session", nil)
				r.AddCookie(rec.Result().Cookies()[0])
				var si sessionInfo
				json.Unmarshal(rec.Body.Bytes(), &si)
				r.Header.Set(csrfHeader, si.CSRFToken)
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a concurrent request of a valid session: %d", c)
		}
	}
}

// addSession adds a session to a store of this process only.
func addSession(st *sessionStore, sess *session, now time.Time) (string, error) {
	id, _, err := st.add(sess, now)
	return id, err
}

func has(st *sessionStore, id string) bool {
	sess, err := st.get(context.Background(), id, time.Time{})
	return err == nil && sess != nil
}
