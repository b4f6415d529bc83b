// Package api is bouncer's HTTP API: SendGrid's v3 suppression, stats,
// email activity, event webhook and bounce forwarding endpoints (paths,
// parameters, limits, response and error shapes as SendGrid's own
// specification gives them), so SendGrid users and client libraries can point
// at bouncer; bouncer's own additions under /bouncer/v1; and the dashboard
// at /ui.
//
// # Contract
//
//   - Every route but /healthz, the OpenAPI document and the dashboard's
//     page and login needs "Authorization: Bearer SG.<key id>.<secret>", or
//     the dashboard's session cookie, which stands for the key it was opened
//     with (same account, scopes and rate limit) and needs the session's
//     X-CSRF-Token header on every request that is not GET or HEAD. The key
//     decides the account; every store call takes that account as its first
//     argument and nothing in a path, a parameter or a body can name another
//     one.
//   - Errors have SendGrid's shape, {"errors":[{"field":null,"message":"..."}]},
//     with 400 (field named), 401, 403, 404, 405, 413, 429, 500 (internal
//     errors are logged, never shown), 502 (the webhook test's receiver
//     failed) or 503 (a part that needs configuration, such as
//     BOUNCER_SECRET_KEY for webhooks, is off; or, with Retry-After, the
//     server is answering as many statistics queries as it may, or a store
//     cannot be reached: a network error, a timeout, Config.Unavailable).
//   - Keys loaded longer ago than Config.KeyRefresh are never trusted:
//     while they cannot be reloaded, every request with a key or session
//     gets 503 with Retry-After (fail closed), so a revocation takes effect
//     within KeyRefresh whether or not ClickHouse answers.
//   - A statistics answer holds at most maxStatsEntries entries (periods ×
//     names), larger requests are 400; at most Config.MaxStatsQueries
//     statistics queries run at once, a quarter of them for one account
//     (limits.go).
//   - A path not in clean form (dot segments, percent-encoded ones too,
//     doubled slashes) is 404, never redirected.
//   - Failed authentication is limited per client address (limits.go):
//     past the budget, 429 with Retry-After before the key is checked; a
//     key id's budget is per address, so no one can lock a key out.
//   - Each key has a token bucket (Config.RateLimit per second over the
//     deployment: each of Config.Replicas processes holds its share); every
//     authenticated response carries X-RateLimit-Limit, X-RateLimit-Remaining
//     and X-RateLimit-Reset (unix seconds when the bucket is full again),
//     counted for the deployment (limits: middleware.go).
//   - A delete writes a removal stamped with the server's clock, or with
//     the entry's created time when that is later (an entry dated ahead of
//     the clock), so a delete always takes effect: an entry whose newest
//     change (by event time) is that removal is gone, whatever order the
//     writes arrive in; a later event adds it back.
//   - Addresses are compared trimmed with ASCII letters lower-cased and no
//     other character changed (schemas.NormalizeAddress, as the pipeline):
//     the Kelvin sign is not k. Routes that name a stored address (get,
//     delete, check, erase) accept every address the pipeline stores;
//     routes that add one use the stricter rules of the CSV import.
//   - A path parameter may hold an encoded slash (%2F, also doubled); a
//     request body must be valid UTF-8.
//
// Every route is in the route table (routes.go, the one place routes are listed);
// the OpenAPI document (assembled from openapi/*.json, served at
// /openapi.json and /v3/openapi.json) is checked against that table, and
// every response of the package's tests is validated against it.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Store is what the API reads and writes. Every method takes the
// authenticated account first and touches only that account's data.
type Store interface {
	Suppressions(ctx context.Context, account string, q suppression.Query) ([]suppression.Entry, error)
	// CountSuppressions counts the entries q selects (Offset and Limit
	// aside).
	CountSuppressions(ctx context.Context, account string, q suppression.Query) (uint64, error)
	WriteSuppressions(ctx context.Context, account string, changes []suppression.Change) error
	// DeleteAllSuppressions removes every current entry of a list as of at.
	DeleteAllSuppressions(ctx context.Context, account, list string, group int64, at time.Time) error
	// BounceClassifications counts bounce events per day and
	// classification in [from, to).
	BounceClassifications(ctx context.Context, account string, from, to time.Time) ([]analytics.DayCount, error)
	// BounceClassificationDomains counts bounce events of one
	// classification per day and recipient domain in [from, to).
	BounceClassificationDomains(ctx context.Context, account, class string, from, to time.Time) ([]analytics.DayCount, error)
}

// Config is what NewServer needs.
type Config struct {
	// Store and Keys are required.
	Store Store
	Keys  KeyStore
	// Logger gets one line per request; default: discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RateLimit is requests per second per key; default 10. The bucket holds
	// RateBurst requests; default RateLimit rounded up (at least 1).
	RateLimit float64
	RateBurst int
	// MaxBodyBytes bounds a request body; default 1 MiB.
	MaxBodyBytes int64
	// Checker answers the batch check from memory; nil disables it.
	Checker Checker
	// Stats answers the stats endpoints; nil disables them.
	Stats Stats
	// Categories lists an account's categories (GET /v3/categories); nil
	// disables that route. The category sums are Stats'.
	Categories CategoryStore
	// Activity answers the email activity endpoints; nil disables them.
	// GeoIP says the workers place opens and clicks with a geoip database
	// (BOUNCER_GEOIP_DB): without it, /v3/geo/stats says it needs one.
	GeoIP bool
	// Downloads keeps the activity CSV downloads; nil disables them.
	Downloads DownloadStore
	// MaxDownloads is the most activity CSV downloads this process
	// produces at once; default 2.
	MaxDownloads int
	// Context bounds the work the server does in the background (the
	// activity CSV downloads): when it ends, that work stops. Default:
	// context.Background().
	Context context.Context
	// PublicURL is the scheme and host clients reach the API at, for the
	// links it hands out (a download's presigned_url); default: the
	// request's own (http, or https under TLS, and its Host).
	PublicURL string
	Activity  Activity
	// Privacy erases addresses and imports and exports lists; nil disables it.
	Privacy PrivacyStore
	// Forwarding keeps bounce forwarding settings; nil disables them.
	Forwarding ForwardingStore
	// BouncePurge keeps bounce purge settings; nil disables them.
	BouncePurge PurgeStore
	// Groups keeps unsubscribe groups; nil disables the /v3/asm/groups
	// routes but for the group unsubscribes themselves.
	Groups GroupStore
	// Webhooks keeps webhook subscriptions; nil disables them.
	Webhooks WebhookStore
	// WebhookOps reads delivery state and replays failed batches; nil
	// disables those routes.
	WebhookOps WebhookOps
	// WebhookTester sends the test deliveries of POST
	// /v3/user/webhooks/event/test (sinks/webhook's Tester); nil: that
	// route answers 503.
	WebhookTester WebhookTester
	// Dashboard answers the dashboard's own queries; nil disables them.
	Dashboard DashboardStore
	// TrustedProxies are the reverse proxies in front of the API: for a
	// request from one of them, failed authentications are counted for the
	// client X-Forwarded-For names (limits.go). Default none: the peer's
	// address counts, so behind a proxy every client shares one budget.
	TrustedProxies []netip.Prefix
	// Unavailable, when set, says whether a store's error means the store
	// cannot be reached now (answered 503 with Retry-After, not 500), beyond
	// what the API recognises itself (network errors, timeouts, closed
	// connections, errors with Temporary() or Unavailable() true).
	Unavailable func(error) bool
	// MaxStatsQueries is the most statistics queries (the stats, bounce
	// classification and dashboard routes) answered at once, a quarter of
	// them (at least 1) for one account; others wait up to 15s for a place.
	// Default 8.
	MaxStatsQueries int
	// Metrics counts requests by route pattern and status; default:
	// unregistered metrics (serve them with NewRequestMetrics(reg) on an
	// ops listener of their own, never on the API's).
	Metrics *RequestMetrics
	// Sessions keeps the dashboard's sessions where every API process sees
	// them; nil keeps them in this process's memory (a restart logs
	// everyone out, and other processes do not know them).
	Sessions SessionStore
	// Replicas is the number of API processes of the deployment, each
	// behind the same load balancer: each process enforces 1/Replicas of
	// RateLimit and RateBurst per key (limits.go). Default 1.
	Replicas int
	// KeyRefresh is the revocation delay: keys are reloaded when half of it
	// has passed, a revoked key stops working within it, and keys loaded
	// longer ago are never trusted: while the key store cannot be reached
	// after that, authenticated requests and dashboard logins get 503 with
	// Retry-After. Default 5s. An unknown key id reloads at most once a
	// second (or per half KeyRefresh, when that is shorter).
	KeyRefresh time.Duration
}

// Validate fills defaults and reports the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return fmt.Errorf("api: Config.Store is nil")
	case c.Keys == nil:
		return fmt.Errorf("api: Config.Keys is nil")
	case c.RateLimit < 0:
		return fmt.Errorf("api: rate limit %v: want a positive number of requests per second", c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("api: rate burst %d: want at least 1", c.RateBurst)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("api: max body bytes %d: want a positive size", c.MaxBodyBytes)
	case c.Replicas < 0:
		return fmt.Errorf("api: replicas %d: want the number of API processes behind the load balancer (at least 1)", c.Replicas)
	case c.MaxStatsQueries < 0:
		return fmt.Errorf("api: max stats queries %d: want at least 1", c.MaxStatsQueries)
	}
	if c.MaxDownloads <= 0 {
		c.MaxDownloads = 2
	}
	if c.Context == nil {
		c.Context = context.Background()
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RateLimit == 0 {
		c.RateLimit = 10
	}
	if c.RateBurst == 0 {
		c.RateBurst = max(1, int(c.RateLimit+0.999999))
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxStatsQueries == 0 {
		c.MaxStatsQueries = 8
	}
	if c.KeyRefresh <= 0 {
		c.KeyRefresh = 5 * time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewRequestMetrics(nil)
	}
	return nil
}

// server holds the dependencies of the handlers.
type server struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	store    Store
	checker  Checker
	stats    Stats
	activity Activity
	keys     *keyCache
	limiter  *limiter
	queries  *queryGate
	// authFails counts failed authentications per source (limits.go).
	authFails *failBudget
	mux       *http.ServeMux
	metrics   *RequestMetrics
	// downloads holds a place per activity download being produced.
	downloads chan struct{}
	// sessionStore holds the dashboard's login sessions (ui.go).
	sessionStore *sessionStore
}

// NewServer returns the API's handler. It panics on a Config that does not
// validate (a wiring mistake): call cfg.Validate first to get the error.
func NewServer(cfg Config) http.Handler {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &server{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, store: cfg.Store, checker: cfg.Checker, stats: cfg.Stats, activity: cfg.Activity,
		keys:      &keyCache{store: cfg.Keys, every: cfg.KeyRefresh, missEvery: min(time.Second, cfg.KeyRefresh/2), now: cfg.Now},
		limiter:   newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.Replicas),
		authFails: newFailBudget(),
		queries:   newQueryGate(cfg.MaxStatsQueries, max(1, cfg.MaxStatsQueries/4), 15*time.Second),
		mux:       http.NewServeMux(),
		metrics:   cfg.Metrics,
		downloads: make(chan struct{}, cfg.MaxDownloads),

		sessionStore: newSessionStore(),
	}
	s.sessionStore.shared, s.sessionStore.every, s.sessionStore.tryEvery = cfg.Sessions, cfg.KeyRefresh, s.keys.missEvery
	for _, rt := range s.routes() {
		h := rt.handler
		if rt.auth {
			h = s.authenticated(rt.scope, h)
		}
		s.mux.Handle(rt.method+" "+rt.path, h)
	}
	return s
}
