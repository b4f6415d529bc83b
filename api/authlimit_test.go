package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// from is req as sent from addr (host:port).
func from(req *http.Request, addr string) *http.Request {
	req.RemoteAddr = addr
	return req
}

func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestFailedAuthenticationIsLimited (issue 16, item 11: 1,000 wrong
// secrets in 0.43 s, never limited): an outsider guessing the secret of a
// known key id is refused with 429 and Retry-After after a few tries, before
// the key is even checked, yet cannot lock the key out for anyone else;
// trying many key ids hits the source's own budget; time gives the budget
// back.
func TestFailedAuthenticationIsLimited(t *testing.T) {
	token, k := testKey(t, "acme", false)
	other, k2 := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k, k2}, Now: c.now, RateLimit: 1e6})
	wrong := token[:len(token)-4] + "AAAA"
	const attacker, victim = "198.51.100.7:4000", "203.0.113.9:5000"
	codes := map[int]int{}
	for range 1000 {
		codes[serve(h, from(hostileReq("GET", "/v3/suppression/bounces", wrong, ""), attacker)).Code]++
	}
	if codes[401] != authFailPerKey || codes[429] != 1000-authFailPerKey {
		t.Fatalf("1000 wrong secrets for one key id: %v, want %d × 401 then 429", codes, authFailPerKey)
	}
	rec := doRequest(t, h, from(hostileReq("GET", "/v3/suppression/bounces", token, ""), attacker))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "12" {
		t.Errorf("the right secret from the guessing address: %d Retry-After %q, want 429 and 12", rec.Code, rec.Header().Get("Retry-After"))
	} else if _, msg := sendGridError(t, rec); !strings.Contains(msg, "failed authentication") {
		t.Errorf("429 message %q", msg)
	}
	if rec := serve(h, from(hostileReq("GET", "/v3/suppression/bounces", token, ""), victim)); rec.Code != 200 {
		t.Errorf("the key from anywhere else while its id is being guessed: %d, want 200", rec.Code)
	}
	if rec := serve(h, from(hostileReq("GET", "/v3/suppression/bounces", other, ""), attacker)); rec.Code != 200 {
		t.Errorf("another key from the guessing address: %d, want 200 (only that key id is spent there)", rec.Code)
	}

	// Many key ids from one address: the address's own budget.
	codes = map[int]int{}
	for i := range 200 {
		codes[serve(h, from(hostileReq("GET", "/v3/suppression/bounces", fmt.Sprintf("SG.id%d.secret", i), ""), attacker)).Code]++
	}
	if left := authFailPerSource - authFailPerKey; codes[401] != left || codes[429] != 200-left {
		t.Errorf("200 key ids: %v, want %d × 401 then 429", codes, left)
	}
	if rec := serve(h, from(hostileReq("GET", "/v3/suppression/bounces", other, ""), attacker)); rec.Code != 429 {
		t.Errorf("a valid key from an address whose budget is spent: %d, want 429", rec.Code)
	}
	if rec := serve(h, from(hostileReq("GET", "/v3/suppression/bounces", other, ""), victim)); rec.Code != 200 {
		t.Errorf("a valid key from another address: %d", rec.Code)
	}
	// An IPv6 client counts by its /64.
	codes = map[int]int{}
	for i := range 40 {
		codes[serve(h, from(hostileReq("GET", "/v3/suppression/bounces", fmt.Sprintf("SG.v6id%d.s", i), ""), fmt.Sprintf("[2001:db8:1:2::%x]:443", i))).Code]++
	}
	if codes[429] != 40-authFailPerSource {
		t.Errorf("40 addresses of one /64: %v, want %d refused", codes, 40-authFailPerSource)
	}

	c.add(authFailPerKeyEvery)
	if rec := serve(h, from(hostileReq("GET", "/v3/suppression/bounces", token, ""), attacker)); rec.Code != 200 {
		t.Errorf("the right secret %v later: %d, want 200", authFailPerKeyEvery, rec.Code)
	}
}

// TestFailedLoginsAndSessionsAreLimited: dashboard logins with a wrong key
// and requests with an unknown session cookie spend the same budget.
func TestFailedLoginsAndSessionsAreLimited(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1e6})
	wrong := token[:len(token)-4] + "AAAA"
	codes := map[int]int{}
	for range 20 {
		codes[serve(h, loginRequest(wrong)).Code]++
	}
	if codes[401] != authFailPerKey || codes[429] != 20-authFailPerKey {
		t.Errorf("20 logins with a wrong secret: %v", codes)
	}
	rec := doRequest(t, h, loginRequest(token))
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("login with the right key from that address: %d, want 429 with Retry-After", rec.Code)
	}
	codes = map[int]int{}
	for i := range 40 {
		req := httptest.NewRequest("GET", "/v3/suppression/bounces", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: fmt.Sprint("guess", i)})
		codes[serve(h, from(req, "192.0.2.50:1")).Code]++
	}
	if codes[401] != authFailPerKey || codes[429] != 40-authFailPerKey {
		t.Errorf("40 guessed session cookies: %v", codes)
	}
	req := httptest.NewRequest("GET", "/ui/session", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: "guess"})
	if rec := serve(h, from(req, "192.0.2.50:1")); rec.Code != 429 {
		t.Errorf("GET /ui/session with a guessed cookie after that: %d, want 429", rec.Code)
	}
}

// TestFailedAuthenticationBehindAProxy: with the proxy trusted, each client
// named in X-Forwarded-For has its own budget; from an untrusted peer the
// header is ignored, so it cannot be used to dodge the limit.
func TestFailedAuthenticationBehindAProxy(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1e6,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	wrong := token[:len(token)-4] + "AAAA"
	viaProxy := func(key, client string) int {
		req := from(hostileReq("GET", "/v3/suppression/bounces", key, ""), "10.1.2.3:80")
		req.Header.Set("X-Forwarded-For", client+", 10.9.9.9")
		return serve(h, req).Code
	}
	for range 20 {
		viaProxy(wrong, "198.51.100.7")
	}
	if code := viaProxy(wrong, "198.51.100.7"); code != 429 {
		t.Errorf("the guessing client behind the proxy: %d, want 429", code)
	}
	if code := viaProxy(token, "203.0.113.9"); code != 200 {
		t.Errorf("another client behind the same proxy: %d, want 200", code)
	}
	codes := map[int]int{}
	for i := range 20 {
		req := from(hostileReq("GET", "/v3/suppression/bounces", wrong, ""), "198.51.100.99:1")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		codes[serve(h, req).Code]++
	}
	if codes[429] != 20-authFailPerKey {
		t.Errorf("X-Forwarded-For from an untrusted peer: %v, want it ignored", codes)
	}
}

// TestFailBudgetIsBounded: the buckets stay under their maximum however
// many sources fail.
func TestFailBudgetIsBounded(t *testing.T) {
	f := newFailBudget()
	f.max = 100
	now := time.Unix(1764201600, 0)
	for i := range 1000 {
		f.fail(fmt.Sprintf("198.51.%d.%d", i/256, i%256), "id", now)
		if len(f.buckets) > f.max {
			t.Fatalf("%d buckets after %d sources, max %d", len(f.buckets), i+1, f.max)
		}
	}
	if f.wait("198.51.3.231", "id", now) != 0 {
		t.Error("the newest source is refused after one failure")
	}
}
