// Package apitest runs bouncer's HTTP API in-process over a fresh, migrated
// ClickHouse database, for the integration tests of the packages behind it
// (suppression, subscription, ...): what a test does through the API is
// what a customer does, and what it reads back from the store is what the
// workers would read. It is imported by tests only.
package apitest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Options adds parts to the API; zero values leave them off.
type Options struct {
	// Changes announces list changes (the change-log writer); nil: none.
	Changes suppression.Publisher
	// Checker answers the batch check.
	Checker api.Checker
	// Webhooks serves the webhook routes over the fixture's store (called
	// once the store is open); nil: the routes answer 503.
	Webhooks func(st *clickhouse.Store) *subscription.Service
}

// API is the running API with keys for the accounts acme and globex.
type API struct {
	Store      *clickhouse.Store
	Config     clickhouse.Config
	URL        string
	KeyA, KeyB string // accounts acme and globex
}

// Start migrates a fresh database, makes the two keys and serves the API
// until the test ends.
func Start(t testing.TB, o Options) *API {
	t.Helper()
	addr := testenv.ClickHouse(t)
	cfg := clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(t, addr)}
	st := Store(t, cfg)
	var webhooks api.WebhookStore
	var ops api.WebhookOps
	if o.Webhooks != nil {
		subs := o.Webhooks(st)
		webhooks, ops = subs, subs
	}
	lists := api.ListStore{Service: suppression.NewService(st, o.Changes, enrich.MustNew()), Counts: st}
	srv := httptest.NewServer(api.NewServer(api.Config{Store: lists, Privacy: lists.Service, Groups: lists.Service, Keys: st,
		Checker: o.Checker, Webhooks: webhooks, WebhookOps: ops, Stats: st, Activity: st, Forwarding: st, BouncePurge: st, RateLimit: 10000}))
	t.Cleanup(srv.Close)
	return &API{Store: st, Config: cfg, URL: srv.URL, KeyA: NewKey(t, st, "acme"), KeyB: NewKey(t, st, "globex")}
}

// Store migrates cfg's database and opens it until the test ends.
func Store(t testing.TB, cfg clickhouse.Config) *clickhouse.Store {
	t.Helper()
	if _, err := clickhouse.Migrate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	st, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// NewKey stores a new key with every scope for account and returns it.
func NewKey(t testing.TB, st *clickhouse.Store, account string) string {
	t.Helper()
	key, id, hash, err := accounts.NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := st.WriteAPIKey(context.Background(), accounts.Key{AccountID: account, KeyID: id, Hash: hash, Name: "test", Created: now}, now); err != nil {
		t.Fatal(err)
	}
	return key
}

// Call makes a request to base+path with key and a JSON body (or the
// content type given after a "\x00" in method: "POST\x00text/csv") and
// returns the status, body and headers.
func Call(t testing.TB, base, key, method, path, body string) (int, string, http.Header) {
	t.Helper()
	method, contentType, _ := strings.Cut(method, "\x00")
	if contentType == "" && body != "" {
		contentType = "application/json"
	}
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Call makes a request to the API.
func (a *API) Call(t testing.TB, key, method, path, body string) (int, string) {
	t.Helper()
	code, b, _ := Call(t, a.URL, key, method, path, body)
	return code, b
}

// Must makes a request that must answer want and decodes its JSON into v
// (when not nil).
func (a *API) Must(t testing.TB, want int, key, method, path, body string, v any) {
	t.Helper()
	code, got := a.Call(t, key, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(got), v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, got)
		}
	}
}

// WaitFor polls cond every 250ms until it holds or timeout passes (then
// the test fails with cond's last description of the state).
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within %s (last: %s)", what, timeout, last)
}
