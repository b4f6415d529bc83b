package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bouncer-mail/bouncer/accounts"
)

// reqInfo is filled in as a request passes the middleware, for the log line
// and for handlers whose answer depends on the key's other scopes.
type reqInfo struct {
	account, keyID string
	// scopes of the key (empty: all).
	scopes []string
	// storeDown is the server's Config.Unavailable, for writeError.
	storeDown func(error) bool
	// legacy marks a request of SendGrid's v2 Web API (paths under
	// /api/): its errors have v2's shape (legacy.go).
	legacy bool
	// legacyForm holds a v2 request's parameters once read.
	legacyForm url.Values
}

// unavailable is Config.Unavailable's word on err (false without one).
func (ri *reqInfo) unavailable(err error) bool { return ri.storeDown != nil && ri.storeDown(err) }

type ctxKey struct{}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// account is the authenticated account of a request that passed
// authenticated; handlers take it from here and nowhere else.
func account(r *http.Request) string { return info(r.Context()).account }

// hasScope reports whether the request's key has scope (a key without
// scopes has all). Routes name one scope in the table; a handler asks
// hasScope when part of what the route can reach is guarded by another
// route's scope, so that a scope means the same on every path to the same
// data.
func hasScope(r *http.Request, scope string) bool {
	ri := info(r.Context())
	return ri.account != "" && (len(ri.scopes) == 0 || slices.Contains(ri.scopes, scope))
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += n
	return n, err
}

var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// ServeHTTP routes, answers unknown routes and methods in SendGrid's error
// shape, and logs one line per request (the route pattern, never the path:
// paths hold addresses).
// cleanPath reports whether p, a path as sent (escaped), is in canonical
// form: no dot segments (percent-encoded ones included) and no doubled
// slashes (a trailing slash is fine). An encoded slash (%2F) belongs to its
// segment, so a path parameter such as an address may hold "/" or "//".
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "" && i < len(segs)-1 {
			return false
		}
		dec, err := url.PathUnescape(seg)
		if err != nil || dec == "." || dec == ".." {
			return false
		}
	}
	return true
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	ri := &reqInfo{storeDown: s.cfg.Unavailable, legacy: strings.HasPrefix(r.URL.Path, legacyPrefix)}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
	sw := &statusWriter{ResponseWriter: w}
	_, pattern := s.mux.Handler(r)
	if !cleanPath(r.URL.EscapedPath()) {
		// ServeMux would redirect "/v3/a/../b" to "/v3/b"; an API client
		// gets SendGrid's 404 instead, and nothing is served.
		pattern = ""
		writeError(sw, s.log, r, errorf(ENotFound, "", "resource not found"))
	} else if pattern != "" {
		s.mux.ServeHTTP(sw, r)
	} else {
		var allow []string
		for _, m := range probeMethods {
			probe := *r
			probe.Method = m
			if _, p := s.mux.Handler(&probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			if slices.Contains(allow, http.MethodGet) {
				allow = append(allow, http.MethodHead)
			}
			sw.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(sw, s.log, r, errorf(EMethod, "", "method not allowed"))
		} else {
			writeError(sw, s.log, r, errorf(ENotFound, "", "resource not found"))
		}
	}
	took := time.Since(start)
	s.metrics.observe(r.Method, pattern, sw.status, took)
	s.log.Info("request", "method", r.Method, "route", pattern, "status", sw.status, "bytes", sw.bytes,
		"duration", took.Round(time.Microsecond), "account", ri.account, "key_id", ri.keyID)
}

// authenticated wraps a route that needs a key with scope (empty: any key):
// authentication (a Bearer key or a dashboard session), the per-key rate
// limit, and the body limit.
func (s *server) authenticated(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := s.credential(r)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		ri := info(r.Context())
		ri.account, ri.keyID, ri.scopes = key.AccountID, key.KeyID, key.Scopes

		allowed, remaining, reset := s.limiter.take(key.KeyID, s.now())
		h := w.Header()
		h.Set("X-RateLimit-Limit", strconv.Itoa(s.cfg.RateBurst))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
		if !allowed {
			writeError(w, s.log, r, errorf(ERateLimited, "", "too many requests"))
			return
		}
		if scope != "" && len(key.Scopes) > 0 && !slices.Contains(key.Scopes, scope) {
			writeError(w, s.log, r, errorf(EForbidden, "", "access forbidden"))
			return
		}
		if r.ContentLength > s.cfg.MaxBodyBytes {
			writeError(w, s.log, r, errorf(ETooLarge, "", "request body is larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// credential returns the key a request acts as: its Bearer key, or, with
// no Authorization header, the key of its dashboard session cookie (which
// also checks the CSRF token of a state-changing request; see ui.go).
func (s *server) credential(r *http.Request) (accounts.Key, error) {
	presented, ok := bearer(r)
	if !ok && info(r.Context()).legacy && r.Header.Get("Authorization") == "" {
		return s.legacyKey(r)
	}
	if !ok {
		if r.Header.Get("Authorization") == "" {
			if c, err := r.Cookie(sessionCookie); err == nil {
				return s.authAttempt(r, "session", func() (accounts.Key, error) {
					key, _, err := s.sessionKey(r, c.Value)
					return key, err
				})
			}
		}
		return accounts.Key{}, errorf(EUnauthorized, "", "authorization required")
	}
	return s.checkKey(r, presented)
}

// checkKey authenticates a presented key under the failure budget
// (authAttempt).
func (s *server) checkKey(r *http.Request, presented string) (accounts.Key, error) {
	id, _, _ := accounts.ParseKey(presented)
	return s.authAttempt(r, id, func() (accounts.Key, error) {
		key, ok, err := s.keys.authenticate(r.Context(), presented)
		if err != nil {
			return accounts.Key{}, err
		}
		if !ok {
			return accounts.Key{}, errorf(EUnauthorized, "", "The provided authorization grant is invalid, expired, or revoked")
		}
		return key, nil
	})
}

// bearer returns the key of "Authorization: Bearer <key>" (the scheme is
// case-insensitive).
func bearer(r *http.Request) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}

// limiter is a token bucket per key id (golang.org/x/time/rate) holding
// this process's share of the deployment's limit: with Config.Replicas N,
// rate/N tokens a second and a burst of burst/N (rounded up), so N
// processes behind a balancer that spreads each key's requests evenly
// allow the configured rate together, and the headers count for the whole
// deployment (this process's tokens times N). The map grows only with
// authenticated keys, so it is bounded by the number of keys.
type limiter struct {
	rate     rate.Limit // this process's tokens per second
	burst    int        // this process's bucket
	replicas int
	total    int // the deployment's burst, the most Remaining says

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst, replicas int) *limiter {
	return &limiter{
		rate: rate.Limit(perSecond / float64(replicas)), burst: (burst + replicas - 1) / replicas,
		replicas: replicas, total: burst, buckets: map[string]*rate.Limiter{},
	}
}

// take spends a token of key's bucket if it has one. It reports the whole
// tokens left in the deployment (this process's times the replicas) and
// when the bucket will be full again.
func (l *limiter) take(key string, now time.Time) (ok bool, remaining int, reset time.Time) {
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	ok = b.AllowN(now, 1)
	tokens := max(0, b.TokensAt(now))
	refill := time.Duration((float64(l.burst) - tokens) / float64(l.rate) * float64(time.Second))
	return ok, min(l.total, int(tokens)*l.replicas), now.Add(refill).Add(time.Second - 1).Truncate(time.Second)
}

// configured returns the store a route needs, or answers 404 "<what> not
// available on this server" when the server was built without it (what
// ends with "is" or "are": "bounce purge is").
func configured[T any](s *server, w http.ResponseWriter, r *http.Request, store T, what string) (T, bool) {
	if any(store) == nil {
		writeError(w, s.log, r, errorf(ENotFound, "", "%s not available on this server", what))
		return store, false
	}
	return store, true
}
