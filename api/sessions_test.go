package api

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// fakeSessions is a SessionStore in memory, merged as the ClickHouse one
// is: the latest Seen, Ended for good.
type fakeSessions struct {
	mu   sync.Mutex
	rows map[string]accounts.Session
	down bool
}

func (f *fakeSessions) WriteSessions(ctx context.Context, ss []accounts.Session) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errRefused
	}
	if f.rows == nil {
		f.rows = map[string]accounts.Session{}
	}
	for _, x := range ss {
		if o, ok := f.rows[x.IDHash]; ok {
			x.Seen = later(x.Seen, o.Seen)
			x.Ended = x.Ended || o.Ended
		}
		f.rows[x.IDHash] = x
	}
	return nil
}

func (f *fakeSessions) Sessions(ctx context.Context, idHash string, since time.Time) ([]accounts.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errRefused
	}
	var out []accounts.Session
	for _, x := range f.rows {
		if !x.Ended && !x.Created.Before(since) && (idHash == "" || x.IDHash == idHash) {
			out = append(out, x)
		}
	}
	return out, nil
}

func (f *fakeSessions) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }

// TestSharedSessions: two servers over one session store, as two API
// processes behind a load balancer: a login on one works on the other and
// on a third started later (a restart); a logout on one ends the session
// on the other within the key refresh period; the per-account cap counts
// both processes' sessions; a store that cannot be read fails closed.
func TestSharedSessions(t *testing.T) {
	token, k := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	shared := &fakeSessions{}
	newServer := func() http.Handler {
		return NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Now: c.now, RateLimit: 1e6, Sessions: shared, KeyRefresh: 5 * time.Second})
	}
	a, b := newServer(), newServer()
	onA := &browser{t: t, h: a}
	si := onA.login(token)
	onB := &browser{t: t, h: b, cookie: onA.cookie}
	for _, path := range []string{"/ui/session", "/v3/suppression/bounces"} {
		if rec := onB.req("GET", path, "", ""); rec.Code != 200 {
			t.Fatalf("GET %s on the other process: %d %s", path, rec.Code, rec.Body)
		}
	}
	if rec := onB.req("DELETE", "/v3/suppression/bounces/kim%40example.com", "", ""); rec.Code != 403 {
		t.Errorf("a delete without the CSRF token on the other process: %d, want 403", rec.Code)
	}
	if rec := onB.req("DELETE", "/v3/suppression/bounces/kim%40example.com", si.CSRFToken, ""); rec.Code != 204 {
		t.Errorf("a delete with the token the first process gave: %d, want 204", rec.Code)
	}
	restarted := &browser{t: t, h: newServer(), cookie: onA.cookie}
	if rec := restarted.req("GET", "/ui/session", "", ""); rec.Code != 200 {
		t.Errorf("after a restart: %d, want 200", rec.Code)
	}

	if rec := onA.req("DELETE", "/ui/session", si.CSRFToken, ""); rec.Code != 204 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	if rec := onA.req("GET", "/ui/session", "", ""); rec.Code != 401 {
		t.Errorf("on the process logged out of: %d, want 401", rec.Code)
	}
	c.add(5 * time.Second)
	if rec := onB.req("GET", "/ui/session", "", ""); rec.Code != 401 {
		t.Errorf("on the other process a revocation delay after the logout: %d, want 401", rec.Code)
	}

	// The cap counts every process's sessions: 200 logins alternating over
	// a and b, then one more ends the oldest everywhere.
	var first *browser
	for i := range maxAccountSessions {
		c.add(time.Millisecond)
		x := &browser{t: t, h: []http.Handler{a, b}[i%2]}
		x.login(token)
		if first == nil {
			first = x
		}
	}
	c.add(time.Millisecond)
	(&browser{t: t, h: b}).login(token)
	c.add(5 * time.Second)
	for name, h := range map[string]http.Handler{"a": a, "b": b} {
		if rec := (&browser{t: t, h: h, cookie: first.cookie}).req("GET", "/ui/session", "", ""); rec.Code != 401 {
			t.Errorf("the account's oldest session after its %dth login, on %s: %d, want 401", maxAccountSessions+1, name, rec.Code)
		}
	}

	// Fail closed: the store cannot be read for longer than the refresh.
	x := &browser{t: t, h: a}
	x.login(token)
	shared.setDown(true)
	c.add(5 * time.Second)
	if rec := x.req("GET", "/ui/session", "", ""); rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("with the session store down: %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	shared.setDown(false)
	c.add(time.Second)
	if rec := x.req("GET", "/ui/session", "", ""); rec.Code != 200 {
		t.Errorf("with the store back: %d, want 200", rec.Code)
	}
}
