package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// queryGate bounds the statistics queries running at once: at most total
// in the process and perAccount for one account, so the memory they hold is
// bounded however many requests arrive, and one account cannot take every
// place. A request waits for its place at most maxWait (or until it is
// cancelled); then it is 429 when its account's places were taken and 503
// when the process's were, both with Retry-After.
type queryGate struct {
	all        chan struct{}
	perAccount int
	maxWait    time.Duration

	mu       sync.Mutex
	accounts map[string]*accountPlaces
}

// accountPlaces are one account's places; users counts the requests that
// hold or wait for one, so the entry goes when the last one leaves.
type accountPlaces struct {
	places chan struct{}
	users  int
}

func newQueryGate(total, perAccount int, maxWait time.Duration) *queryGate {
	return &queryGate{all: make(chan struct{}, total), perAccount: perAccount, maxWait: maxWait, accounts: map[string]*accountPlaces{}}
}

// enter waits for a place for account; leave gives it back.
func (g *queryGate) enter(ctx context.Context, account string) (leave func(), err error) {
	g.mu.Lock()
	a := g.accounts[account]
	if a == nil {
		a = &accountPlaces{places: make(chan struct{}, g.perAccount)}
		g.accounts[account] = a
	}
	a.users++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if a.users--; a.users == 0 {
			delete(g.accounts, account)
		}
		g.mu.Unlock()
	}
	timer := time.NewTimer(g.maxWait)
	defer timer.Stop()
	select {
	case a.places <- struct{}{}:
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	case <-timer.C:
		done()
		return nil, &Error{Code: ERateLimited, RetryAfter: time.Second,
			Message: "this account's statistics queries are all busy: wait for one to finish and retry"}
	}
	select {
	case g.all <- struct{}{}:
	case <-ctx.Done():
		<-a.places
		done()
		return nil, ctx.Err()
	case <-timer.C:
		<-a.places
		done()
		return nil, &Error{Code: EUnavailable, RetryAfter: time.Second,
			Message: "the server is answering as many statistics queries as it may at once: retry in a moment"}
	}
	return func() {
		<-g.all
		<-a.places
		done()
	}, nil
}

// gated runs next only with a place of s.queries: the statistics routes,
// whose answers are the largest.
func (s *server) gated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leave, err := s.queries.enter(r.Context(), account(r))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		defer leave()
		next.ServeHTTP(w, r)
	})
}

// Failed authentication is counted per source (the client's address) in
// two token buckets, and a source with either empty is refused with 429
// and Retry-After before its credential is even checked:
//
//   - per source and key id: authFailPerKey failures, one more every
//     authFailPerKeyEvery. A client retrying a revoked key in a loop, or an
//     outsider guessing the secret of a known key id, stops there, and the
//     key keeps working from every other source (nobody can lock out a key
//     by knowing its id: key ids are not secret);
//   - per source: authFailPerSource failures, one more every
//     authFailPerSourceEvery, whatever the key ids, so trying many ids does
//     not get around the first.
//
// A source's valid keys are refused too while its budget is spent: clients
// behind one NAT share it. Behind a reverse proxy set Config.TrustedProxies,
// or every client is the proxy. 503s (keys cannot be checked) are not
// failures. Credentials presented: a Bearer key, a dashboard login's
// api_key, a session cookie.
const (
	authFailPerKey         = 5
	authFailPerKeyEvery    = 12 * time.Second
	authFailPerSource      = 30
	authFailPerSourceEvery = 2 * time.Second
	// maxAuthFailBuckets bounds the buckets kept (about 100 bytes each).
	maxAuthFailBuckets = 1 << 16
)

type budget struct {
	burst float64
	every time.Duration // one token back
}

type failBucket struct {
	tokens float64
	last   time.Time
	rule   *budget
}

// failBudget holds the buckets of failed authentications.
type failBudget struct {
	perSource, perKey budget
	max               int

	mu      sync.Mutex
	buckets map[string]*failBucket
}

func newFailBudget() *failBudget {
	return &failBudget{
		perSource: budget{authFailPerSource, authFailPerSourceEvery},
		perKey:    budget{authFailPerKey, authFailPerKeyEvery},
		max:       maxAuthFailBuckets,
		buckets:   map[string]*failBucket{},
	}
}

func (b *failBucket) refill(now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.rule.burst, b.tokens+float64(d)/float64(b.rule.every))
		b.last = now
	}
}

// wait is how long until src may present id again; 0: now.
func (f *failBudget) wait(src, id string, now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var w time.Duration
	for _, k := range []string{src, src + "\x00" + id} {
		b := f.buckets[k]
		if b == nil {
			continue
		}
		b.refill(now)
		if b.tokens < 1 {
			w = max(w, time.Duration((1-b.tokens)*float64(b.rule.every)))
		}
	}
	return w
}

// fail spends a token of src's buckets for id.
func (f *failBudget) fail(src, id string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, rule := range map[string]*budget{src: &f.perSource, src + "\x00" + id: &f.perKey} {
		b := f.buckets[k]
		if b == nil {
			f.makeRoom(now)
			b = &failBucket{tokens: rule.burst, last: now, rule: rule}
			f.buckets[k] = b
		}
		b.refill(now)
		b.tokens = max(0, b.tokens-1)
	}
}

// makeRoom keeps the buckets under max: when full, it drops the buckets
// that are full again (forgotten failures), then, if that freed less than a
// quarter, arbitrary ones.
func (f *failBudget) makeRoom(now time.Time) {
	if len(f.buckets) < f.max {
		return
	}
	for k, b := range f.buckets {
		if b.refill(now); b.tokens >= b.rule.burst {
			delete(f.buckets, k)
		}
	}
	for k := range f.buckets {
		if len(f.buckets) <= f.max*3/4 {
			break
		}
		delete(f.buckets, k)
	}
}

// source is who failed authentications are counted for: the peer's IP
// address (for IPv6 its /64, which one client usually holds whole), or,
// when the peer is one of Config.TrustedProxies, the nearest address in
// X-Forwarded-For that is not.
func (s *server) source(r *http.Request) string {
	addr := func(s string) (netip.Addr, bool) {
		s = strings.TrimSpace(s)
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap(), true
		}
		a, err := netip.ParseAddr(s)
		return a.Unmap(), err == nil
	}
	trusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(s.cfg.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	ip, ok := addr(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if trusted(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, ok := addr(hops[i])
			if !ok {
				break
			}
			ip = a
			if !trusted(a) {
				break
			}
		}
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// authAttempt checks one credential the request presents, id naming it (a
// key id, or "session" for a session cookie), under the failure budget of
// the request's source: 429 with Retry-After before check when the budget
// is spent; a 401 from check spends it.
func (s *server) authAttempt(r *http.Request, id string, check func() (accounts.Key, error)) (accounts.Key, error) {
	src := s.source(r)
	if wait := s.authFails.wait(src, id, s.now()); wait > 0 {
		return accounts.Key{}, &Error{Code: ERateLimited, RetryAfter: wait,
			Message: "too many failed authentication attempts from your address: retry after the Retry-After seconds with a valid key"}
	}
	k, err := check()
	var e *Error
	if errors.As(err, &e) && e.Code == EUnauthorized {
		s.authFails.fail(src, id, s.now())
	}
	return k, err
}
