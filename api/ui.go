package api

// The dashboard at /ui: a single page (api/uiassets, built from web/ with
// `make ui` and committed) that calls the JSON API with a cookie session
// instead of a Bearer key.
//
// # Sessions
//
//   - POST /ui/session with {"api_key": "SG...."} checks the key against the
//     same key cache as Bearer authentication and sets the cookie
//     bouncer_session: a random 256-bit id, HttpOnly, SameSite=Strict, Path=/,
//     Secure when the request came over TLS. Only the SHA-256 of the id is
//     kept: in Config.Sessions (shared by every API process of a deployment,
//     so a login works on each and outlives restarts; sessions.go), or,
//     without one, in this process's memory.
//   - A session ends after sessionIdle without a request, sessionMaxAge after
//     login, on logout (DELETE /ui/session), or when its key is revoked (the
//     key is looked up again on every request, so a revocation ends the
//     session within Config.KeyRefresh). With Config.Sessions, a logout
//     (or a login that ends an older session) on one process ends the
//     session on every process within Config.KeyRefresh too.
//   - An account keeps at most maxAccountSessions sessions (its next login
//     ends its own session closest to its end) and the server at most
//     maxSessions; when those are taken, an account with the most sessions
//     loses one, so logging in often never ends another account's sessions
//     while it holds more than they do.
//   - A request with the cookie (and no Authorization header) acts as the
//     session's key: the key's account, scopes and rate limit apply.
//   - Every request with the cookie other than GET and HEAD must carry the
//     session's CSRF token in the X-CSRF-Token header (compared in constant
//     time), or it gets 403. The token comes with the login response and from
//     GET /ui/session; it is an HMAC of the cookie's id, so every process
//     knows it and no store holds it.
//   - Login answers only JSON (a form on another site cannot send it without
//     a CORS preflight, which is never granted) and refuses a browser's
//     cross-site request (Origin or Sec-Fetch-Site), so another site cannot
//     log a visitor into its own account.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
)

// DashboardStore answers the dashboard's queries that no other route
// answers; nil disables them (their routes answer 404). Every method takes
// the authenticated account first and reads only its data.
type DashboardStore interface {
	// BounceReasons counts the bounce events (bounces and blocks) in
	// [from, to) per reason code, classification and bounce type, most
	// first, at most limit rows.
	BounceReasons(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.ReasonCount, error)
	// TopDomains returns the stats counts of the limit recipient domains
	// with the most requests (processed events and drops) in [from, to),
	// most first.
	TopDomains(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.DomainCounts, error)
	// UnmatchedTexts reports the bounces and deferrals of q's window (of
	// q.Account) that no text rule classified, grouped by masked text.
	UnmatchedTexts(ctx context.Context, q enrich.UnmatchedQuery) (enrich.UnmatchedReport, error)
}

// Session limits.
const (
	sessionCookie = "bouncer_session"
	csrfHeader    = "X-CSRF-Token"
	sessionIdle   = time.Hour      // a session unused this long has ended
	sessionMaxAge = 12 * time.Hour // and any session this long after login
	maxSessions   = 10000          // in all; beyond: see sessionStore.add
	// maxAccountSessions is the most sessions one account keeps; its next
	// login ends the account's session closest to its end.
	maxAccountSessions = 200
	maxLoginBody       = 4 << 10
	dashboardLimit     = 10 // default rows of the dashboard's top lists; at most 100
)

// uiCSP keeps the page to its own origin: no CDN, no inline script or style,
// no framing.
const uiCSP = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'"

var errNoSession = errorf(EUnauthorized, "", "your dashboard session has ended: log in again at /ui/")

// sessionKey returns the key of the request's session cookie: the session
// must exist and not have ended, and its key must still be valid (looked
// up in the key cache, so a revoked key ends the session). A state-changing
// request must also carry the session's CSRF token. It marks the session
// used.
func (s *server) sessionKey(r *http.Request, cookie string) (accounts.Key, *session, error) {
	st := s.sessions()
	now := s.now()
	sess, err := st.get(r.Context(), cookie, now)
	if err != nil {
		return accounts.Key{}, nil, err
	}
	if sess == nil {
		return accounts.Key{}, nil, errNoSession
	}
	st.mu.Lock()
	ended := !now.Before(sess.ends())
	st.mu.Unlock()
	if ended {
		st.forget(cookie)
		return accounts.Key{}, nil, errNoSession
	}
	k, found, err := s.keys.lookup(r.Context(), sess.keyID)
	if err != nil {
		return accounts.Key{}, nil, err
	}
	if !found || k.Revoked || subtle.ConstantTimeCompare([]byte(k.Hash), []byte(sess.keyHash)) != 1 {
		st.forget(cookie)
		return accounts.Key{}, nil, errorf(EUnauthorized, "", "the API key of this session was revoked: log in again with a valid key")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		token := r.Header.Get(csrfHeader)
		if subtle.ConstantTimeCompare([]byte(token), []byte(csrfToken(cookie))) != 1 {
			return accounts.Key{}, nil, errorf(EForbidden, "", "missing or wrong CSRF token: a request with the dashboard's session cookie must send the session's token in the %s header", csrfHeader)
		}
	}
	if err := st.touch(r.Context(), cookie, sess, now); err != nil {
		// The use is written again with the next request: a process may
		// take the session for idle at most this much earlier.
		s.log.Warn("dashboard session: cannot record its use", "err", err)
	}
	return k, sess, nil
}

// The built dashboard: index.html and assets/ (see web/build.mjs).
//
//go:embed uiassets
var uiAssets embed.FS

type uiFile struct {
	body        []byte
	contentType string
	etag        string
}

var uiFiles = loadUIFiles()

func loadUIFiles() map[string]uiFile {
	files := map[string]uiFile{}
	err := fs.WalkDir(uiAssets, "uiassets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := uiAssets.ReadFile(p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		files[strings.TrimPrefix(p, "uiassets/")] = uiFile{body, ct, `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return files
}

// uiHeaders are the security headers of every dashboard response.
func uiHeaders(h http.Header) {
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (s *server) serveUIFile(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := uiFiles[name]
	if !ok {
		writeError(w, s.log, r, errorf(ENotFound, "", "resource not found"))
		return
	}
	h := w.Header()
	uiHeaders(h)
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: the names do not change between builds
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(f.body)
}

// handleUIIndex: GET /ui/: the page. (The pattern "/ui/" also matches
// every path under it that no other route does: those are 404.)
func (s *server) handleUIIndex() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ui/" {
			writeError(w, s.log, r, errorf(ENotFound, "", "resource not found"))
			return
		}
		s.serveUIFile(w, r, "index.html")
	})
}

func (s *server) handleUIAsset() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveUIFile(w, r, "assets/"+r.PathValue("file"))
	})
}

// sessionInfo is the body of POST and GET /ui/session.
type sessionInfo struct {
	Account   string   `json:"account"`
	KeyID     string   `json:"key_id"`
	Scopes    []string `json:"scopes"`
	CSRFToken string   `json:"csrf_token"`
	ExpiresAt int64    `json:"expires_at"`
}

func (st *sessionStore) info(k accounts.Key, sess *session, id string) sessionInfo {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	st.mu.Lock() // seen changes with every request of the session
	ends := sess.ends()
	st.mu.Unlock()
	return sessionInfo{Account: k.AccountID, KeyID: k.KeyID, Scopes: scopes, CSRFToken: csrfToken(id), ExpiresAt: ends.Unix()}
}

// crossSite reports a browser request made by another site.
func crossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return true
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return true
		}
	}
	return false
}

// handleLogin: POST /ui/session {"api_key": "..."}: 201 with the session
// and its cookie, 401 for a key that is not valid.
func (s *server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uiHeaders(w.Header())
		if crossSite(r) {
			writeError(w, s.log, r, errorf(EForbidden, "", "log in from the dashboard's own page"))
			return
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			writeError(w, s.log, r, errorf(EInvalid, "", `send {"api_key": "SG...."} as application/json`))
			return
		}
		var body struct {
			APIKey string `json:"api_key"`
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
		if err != nil {
			writeError(w, s.log, r, errorf(ETooLarge, "", "request body is larger than %d bytes", maxLoginBody))
			return
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			writeError(w, s.log, r, errorf(EInvalid, "", `send {"api_key": "SG...."} as application/json`))
			return
		}
		presented := strings.TrimSpace(body.APIKey)
		if presented == "" {
			writeError(w, s.log, r, errorf(EInvalid, "api_key", "api_key is required: paste a key from bouncer keys create"))
			return
		}
		key, err := s.checkKey(r, presented)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		ri := info(r.Context())
		ri.account, ri.keyID = key.AccountID, key.KeyID
		if allowed, _, _ := s.limiter.take(key.KeyID, s.now()); !allowed {
			writeError(w, s.log, r, errorf(ERateLimited, "", "too many requests"))
			return
		}
		now := s.now()
		sess := &session{account: key.AccountID, keyID: key.KeyID, keyHash: key.Hash, created: now, seen: now}
		id, err := s.sessions().login(r.Context(), sess, now)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: id, Path: "/", Expires: now.Add(sessionMaxAge),
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusCreated, s.sessions().info(key, sess, id))
	})
}

// handleSession: GET /ui/session: the current session (with its CSRF
// token), 401 without one.
func (s *server) handleSession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uiHeaders(w.Header())
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			writeError(w, s.log, r, errorf(EUnauthorized, "", "authorization required"))
			return
		}
		var sess *session
		key, err := s.authAttempt(r, "session", func() (k accounts.Key, err error) {
			k, sess, err = s.sessionKey(r, c.Value)
			return k, err
		})
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		ri := info(r.Context())
		ri.account, ri.keyID = key.AccountID, key.KeyID
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, s.sessions().info(key, sess, c.Value))
	})
}

// handleLogout: DELETE /ui/session: ends the session (CSRF token required
// while it is valid) and clears the cookie: 204.
func (s *server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uiHeaders(w.Header())
		if c, err := r.Cookie(sessionCookie); err == nil {
			_, _, err := s.sessionKey(r, c.Value)
			var e *Error
			if err != nil && !(errors.As(err, &e) && e.Code == EUnauthorized) {
				writeError(w, s.log, r, err)
				return
			}
			if err := s.sessions().end(r.Context(), c.Value); err != nil {
				writeError(w, s.log, r, err)
				return
			}
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
		w.WriteHeader(http.StatusNoContent)
	})
}

// dashboardQuery reads start_date and end_date as the stats routes do, and
// limit (1 to 100, default 10).
func (s *server) dashboardQuery(r *http.Request) (analytics.StatsQuery, int, error) {
	v := r.URL.Query()
	q, _, err := parseStatsQuery(analytics.SegmentGlobal, v, s.now(), false)
	if err != nil {
		return q, 0, err
	}
	limit, set, err := uintParam(v, "limit", 1, 100)
	if err != nil {
		return q, 0, err
	}
	if !set {
		limit = dashboardLimit
	}
	return q, int(limit), nil
}

type reasonEntry struct {
	ReasonCode     string `json:"reason_code"`
	Classification string `json:"classification"`
	BounceType     string `json:"bounce_type"`
	Bounces        uint64 `json:"bounces"`
	Blocks         uint64 `json:"blocks"`
	Example        string `json:"example"`
}

// dashboardRead answers one of the dashboard's queries: the range and
// limit of dashboardQuery, read by read for the request's account, as JSON.
func dashboardRead[T any](s *server, read func(ctx context.Context, d DashboardStore, acct string, q analytics.StatsQuery, limit int) (T, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := s.cfg.Dashboard
		if d == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "the dashboard's statistics are not available on this server"))
			return
		}
		q, limit, err := s.dashboardQuery(r)
		var out T
		if err == nil {
			out, err = read(r.Context(), d, account(r), q, limit)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleUnmatched: GET /bouncer/v1/classify/unmatched, the account's reply
// texts no text rule matched (bouncer classify --unmatched).
func (s *server) handleUnmatched() http.Handler {
	return dashboardRead(s, func(ctx context.Context, d DashboardStore, acct string, q analytics.StatsQuery, limit int) (enrich.UnmatchedReport, error) {
		return d.UnmatchedTexts(ctx, enrich.UnmatchedQuery{Account: acct, Since: q.From, Until: q.To, Limit: limit})
	})
}

// handleBounceReasons: GET /bouncer/v1/stats/bounce_reasons.
func (s *server) handleBounceReasons() http.Handler {
	return dashboardRead(s, func(ctx context.Context, d DashboardStore, acct string, q analytics.StatsQuery, limit int) ([]reasonEntry, error) {
		rows, err := d.BounceReasons(ctx, acct, q.From, q.To, limit)
		out := make([]reasonEntry, 0, len(rows))
		for _, x := range rows {
			out = append(out, reasonEntry{x.ReasonCode, x.Classification, x.BounceType, x.Bounces, x.Blocks, x.Example})
		}
		return out, err
	})
}

type domainEntry struct {
	Domain  string                    `json:"domain"`
	Metrics analytics.ProviderMetrics `json:"metrics"`
}

// handleTopDomains: GET /bouncer/v1/stats/top_domains.
func (s *server) handleTopDomains() http.Handler {
	return dashboardRead(s, func(ctx context.Context, d DashboardStore, acct string, q analytics.StatsQuery, limit int) ([]domainEntry, error) {
		rows, err := d.TopDomains(ctx, acct, q.From, q.To, limit)
		out := make([]domainEntry, 0, len(rows))
		for _, x := range rows {
			out = append(out, domainEntry{x.Domain, x.Counts.ProviderMetrics()})
		}
		return out, err
	})
}
