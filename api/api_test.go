package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/suppression"
)

// These are unit tests of the HTTP layer with an in-memory store; what the
// API does against ClickHouse (tenancy, ordering) is tested in cmd/bouncer.

// fakeStore is the API's store in these tests: its list methods are
// memList's, which suppression/liststest holds to what the ClickHouse
// store does (TestMemListConformance); the analytics ones give canned
// answers.
type fakeStore struct {
	memList
}

func (f *fakeStore) BounceClassifications(ctx context.Context, account string, from, to time.Time) ([]analytics.DayCount, error) {
	return []analytics.DayCount{{Day: "2025-11-27", Key: "Invalid Address", N: 3}, {Day: "2025-11-27", Key: "Content", N: 1}, {Day: "2025-11-28", Key: "Content", N: 2}}, nil
}

func (f *fakeStore) BounceClassificationDomains(ctx context.Context, account, class string, from, to time.Time) ([]analytics.DayCount, error) {
	return nil, nil
}

type fakeKeys []accounts.Key

func (f fakeKeys) APIKeys(ctx context.Context, accountID string) ([]accounts.Key, error) {
	return f, nil
}

// testKey makes a key for account with scopes; revoked if asked.
func testKey(t *testing.T, account string, revoked bool, scopes ...string) (string, accounts.Key) {
	t.Helper()
	token, id, hash, err := accounts.NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return token, accounts.Key{AccountID: account, KeyID: id, Hash: hash, Scopes: scopes, Revoked: revoked}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func do(t *testing.T, h http.Handler, method, path, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	return doRequest(t, h, req)
}

// doRequest serves req (with whatever headers and cookies it carries) and
// validates the answer against the OpenAPI document, as do does.
func doRequest(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	checkOpenAPI(t, h, req, rec)
	return rec
}

// sendGridError decodes SendGrid's error shape and returns the first error's
// field (nil for null) and message; it fails on any other shape.
func sendGridError(t *testing.T, rec *httptest.ResponseRecorder) (*string, string) {
	t.Helper()
	var body struct {
		Errors []struct {
			Field   *string `json:"field"`
			Message string  `json:"message"`
		} `json:"errors"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || len(body.Errors) != 1 || !strings.Contains(rec.Body.String(), `"field":`) {
		t.Fatalf("status %d body %q: not SendGrid's error shape (%v)", rec.Code, rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return body.Errors[0].Field, body.Errors[0].Message
}

func TestErrorsHaveSendGridShapeAndStatus(t *testing.T) {
	good, k1 := testKey(t, "acme", false)
	revoked, k2 := testKey(t, "acme", true)
	readOnly, k3 := testKey(t, "acme", false, "suppression.read")
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k1, k2, k3}, Now: c.now, RateLimit: 1000, MaxBodyBytes: 100})
	wrongSecret := good[:len(good)-2] + "xx"
	big := `{"emails":["` + strings.Repeat("a", 200) + `@x.org"]}`
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		field                         string // "" means null
	}{
		{"no key", "GET", "/v3/suppression/bounces", "", "", 401, ""},
		{"not a key", "GET", "/v3/suppression/bounces", "hello", "", 401, ""},
		{"wrong secret", "GET", "/v3/suppression/bounces", wrongSecret, "", 401, ""},
		{"unknown key id", "GET", "/v3/suppression/bounces", "SG.nope.secret", "", 401, ""},
		{"revoked key", "GET", "/v3/suppression/bounces", revoked, "", 401, ""},
		{"missing scope", "DELETE", "/v3/suppression/bounces/a@x.org", readOnly, "", 403, ""},
		{"unknown route", "GET", "/v3/suppression/nope", good, "", 404, ""},
		{"unknown list entry route", "GET", "/v3/suppression/unsubscribes/a@x.org", good, "", 404, ""},
		{"wrong method", "PUT", "/v3/suppression/bounces", good, "", 405, ""},
		{"limit over 500", "GET", "/v3/suppression/bounces?limit=501", good, "", 400, "limit"},
		{"limit 0", "GET", "/v3/suppression/bounces?limit=0", good, "", 400, "limit"},
		{"negative offset", "GET", "/v3/suppression/blocks?offset=-1", good, "", 400, "offset"},
		{"start_time not a number", "GET", "/v3/suppression/bounces?start_time=yesterday", good, "", 400, "start_time"},
		{"end before start", "GET", "/v3/suppression/bounces?start_time=10&end_time=5", good, "", 400, "end_time"},
		{"bad email in path", "GET", "/v3/suppression/bounces/not-an-email", good, "", 400, "email"},
		{"bad start_date", "GET", "/v3/suppression/bounces/classifications?start_date=27-11-2025", good, "", 400, "start_date"},
		{"unknown classification", "GET", "/v3/suppression/bounces/classifications/Nope", good, "", 400, "classification"},
		{"body too large", "DELETE", "/v3/suppression/bounces", good, big, 413, ""},
		{"bad JSON", "DELETE", "/v3/suppression/bounces", good, `{"emails":`, 400, ""},
		{"both delete_all and emails", "DELETE", "/v3/suppression/bounces", good, `{"delete_all":true,"emails":["a@x.org"]}`, 400, "delete_all"},
		{"neither", "DELETE", "/v3/suppression/bounces", good, `{}`, 400, "emails"},
		{"bad email in body", "DELETE", "/v3/suppression/bounces", good, `{"emails":["a b@x.org"]}`, 400, "emails"},
		{"emails of wrong type", "DELETE", "/v3/suppression/bounces", good, `{"emails":"a@x.org"}`, 400, "emails"},
		{"global add without emails", "POST", "/v3/asm/suppressions/global", good, `{"recipient_emails":[]}`, 400, "recipient_emails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, tc.method, tc.path, tc.key, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			field, msg := sendGridError(t, rec)
			if got := ""; field != nil {
				got = *field
				if got != tc.field {
					t.Errorf("field %q, want %q", got, tc.field)
				}
			} else if tc.field != "" {
				t.Errorf("field null, want %q", tc.field)
			}
			if msg == "" {
				t.Error("empty message")
			}
			if tc.status == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if rec := do(t, h, "GET", "/v3/suppression/bounces", "", ""); !strings.Contains(rec.Body.String(), `"authorization required"`) {
		t.Errorf("missing key: %s, want SendGrid's \"authorization required\"", rec.Body)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	a, ka := testKey(t, "acme", false)
	b, kb := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{ka, kb}, Now: c.now, RateLimit: 2})
	for i, wantRemaining := range []string{"1", "0"} {
		rec := do(t, h, "GET", "/v3/suppression/bounces", a, "")
		if rec.Code != 200 || rec.Header().Get("X-RateLimit-Limit") != "2" || rec.Header().Get("X-RateLimit-Remaining") != wantRemaining {
			t.Fatalf("request %d: %d, headers %v", i+1, rec.Code, rec.Header())
		}
	}
	rec := do(t, h, "GET", "/v3/suppression/bounces", a, "")
	if rec.Code != 429 {
		t.Fatalf("third request in the same instant: %d, want 429", rec.Code)
	}
	if _, msg := sendGridError(t, rec); msg != "too many requests" {
		t.Errorf("429 message %q", msg)
	}
	h429 := rec.Header()
	if h429.Get("X-RateLimit-Limit") != "2" || h429.Get("X-RateLimit-Remaining") != "0" || h429.Get("X-RateLimit-Reset") != "1764201601" {
		t.Errorf("429 headers: limit %q remaining %q reset %q; want 2, 0, 1764201601",
			h429.Get("X-RateLimit-Limit"), h429.Get("X-RateLimit-Remaining"), h429.Get("X-RateLimit-Reset"))
	}
	if rec := do(t, h, "GET", "/v3/suppression/bounces", b, ""); rec.Code != 200 {
		t.Errorf("another key of the same account: %d, want 200 (limits are per key)", rec.Code)
	}
	c.add(500 * time.Millisecond)
	if rec := do(t, h, "GET", "/v3/suppression/bounces", a, ""); rec.Code != 200 {
		t.Errorf("after half a second (one token back): %d, want 200", rec.Code)
	}
}

func TestKeyCacheSeesNewAndRevokedKeys(t *testing.T) {
	token, k := testKey(t, "acme", false)
	keys := &mutableKeys{}
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: keys, Now: c.now, KeyRefresh: 5 * time.Second})
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 401 {
		t.Fatalf("before the key exists: %d", rec.Code)
	}
	keys.set(k)
	c.add(time.Second)
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 200 {
		t.Fatalf("a new key a second later: %d, want 200 (an unknown id reloads)", rec.Code)
	}
	k.Revoked = true
	keys.set(k)
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 200 {
		t.Fatalf("revoked, before the refresh: %d (cached)", rec.Code)
	}
	c.add(5 * time.Second)
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 401 {
		t.Fatalf("revoked, after the refresh interval: %d, want 401", rec.Code)
	}
}

type mutableKeys struct {
	mu    sync.Mutex
	keys  []accounts.Key
	down  bool // APIKeys fails as a stopped ClickHouse does
	loads int
}

func (m *mutableKeys) set(k ...accounts.Key) { m.mu.Lock(); m.keys = k; m.mu.Unlock() }
func (m *mutableKeys) setDown(down bool)     { m.mu.Lock(); m.down = down; m.mu.Unlock() }
func (m *mutableKeys) APIKeys(ctx context.Context, accountID string) ([]accounts.Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	if m.down {
		return nil, errRefused
	}
	return append([]accounts.Key(nil), m.keys...), nil
}

// errRefused is what a query to a stopped ClickHouse returns.
var errRefused = fmt.Errorf("api_keys.list: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})

// TestRevocationFailsClosedWhileTheKeyStoreIsDown: keys loaded longer ago
// than KeyRefresh are not trusted. While the key store is down, a key (here
// one revoked just before the outage) keeps working only until then; after
// that every request, and a dashboard login, is 503 with Retry-After, never
// the stale yes (issue 16, item 10: revoked keys worked 18 s and more).
func TestRevocationFailsClosedWhileTheKeyStoreIsDown(t *testing.T) {
	token, k := testKey(t, "acme", false)
	other, k2 := testKey(t, "acme", false)
	keys := &mutableKeys{}
	keys.set(k, k2)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: keys, Now: c.now, KeyRefresh: 5 * time.Second, RateLimit: 1e6})
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 200 {
		t.Fatalf("before: %d", rec.Code)
	}
	k.Revoked = true
	keys.set(k, k2)
	keys.setDown(true)
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 1900 * time.Millisecond} {
		c.add(d) // 1s, 3s, 4.9s after the last load: within the revocation delay
		if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 200 {
			t.Fatalf("%v into the outage: %d %s, want 200 (keys loaded less than 5s ago)", c.now().Sub(time.Unix(1764201600, 0)), rec.Code, rec.Body)
		}
	}
	c.add(100 * time.Millisecond) // 5s since the keys were loaded
	for _, tok := range []string{token, other, "SG.unknownid.secret"} {
		rec := do(t, h, "GET", "/v3/suppression/bounces", tok, "")
		if rec.Code != 503 || rec.Header().Get("Retry-After") != "5" {
			t.Fatalf("5s into the outage: %d Retry-After %q %s, want 503 with Retry-After 5", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
		if _, msg := sendGridError(t, rec); !strings.Contains(msg, "retry") {
			t.Errorf("503 message %q", msg)
		}
	}
	rec := doRequest(t, h, loginRequest(other))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("dashboard login in the outage: %d, want 503 with Retry-After", rec.Code)
	}
	// The store is tried again at most once a second, not per request.
	before := keys.loads
	for range 50 {
		do(t, h, "GET", "/v3/suppression/bounces", other, "")
	}
	if keys.loads != before {
		t.Errorf("%d reloads for 50 requests in the same instant, want none", keys.loads-before)
	}
	keys.setDown(false)
	c.add(time.Second)
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 401 {
		t.Errorf("revoked key once the store is back: %d, want 401", rec.Code)
	}
	if rec := do(t, h, "GET", "/v3/suppression/bounces", other, ""); rec.Code != 200 {
		t.Errorf("valid key once the store is back: %d, want 200", rec.Code)
	}
}

// TestKeyStoreDownAtStart: keys that were never loaded are not a 500.
func TestKeyStoreDownAtStart(t *testing.T) {
	token, k := testKey(t, "acme", false)
	keys := &mutableKeys{}
	keys.set(k)
	keys.setDown(true)
	h := NewServer(Config{Store: &fakeStore{}, Keys: keys})
	if rec := do(t, h, "GET", "/v3/suppression/bounces", token, ""); rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("key store down since start: %d %s, want 503 with Retry-After", rec.Code, rec.Body)
	}
}

func TestDeleteStampsTheClockAndNormalises(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &fakeStore{}
	at := time.Unix(1764201600, 0)
	h := NewServer(Config{Store: st, Keys: fakeKeys{k}, Now: func() time.Time { return at }})
	if rec := do(t, h, "DELETE", "/v3/suppression/bounces/%20Kim%40Example.COM", token, ""); rec.Code != 204 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	want := suppression.Change{List: "bounces", Email: "Kim@Example.COM", EmailNorm: "kim@example.com", At: at, Deleted: true, Source: "api"}
	if len(st.changes) != 1 || st.changes[0] != want {
		t.Errorf("changes %+v, want %+v", st.changes, want)
	}
}

func TestClassificationsShape(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	rec := do(t, h, "GET", "/v3/suppression/bounces/classifications?start_date=2025-11-27&end_date=2025-11-28", token, "")
	want := `{"result":[{"date":"2025-11-27","stats":[{"classification":"Invalid Address","count":3},{"classification":"Content","count":1}]},{"date":"2025-11-28","stats":[{"classification":"Content","count":2}]}]}`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("%d %s\nwant %s", rec.Code, rec.Body, want)
	}
	rec = do(t, h, "GET", "/v3/suppression/bounces/classifications/Invalid%20Address", token, "")
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"result":[]}` {
		t.Errorf("by domain, none: %d %s", rec.Code, rec.Body)
	}
}

// TestOpenAPIMatchesRoutes: the document is valid JSON, OpenAPI 3.1, and
// lists exactly the routes of routes.go, each with its scope.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	inRoutes := map[string]bool{}
	for _, rt := range (&server{}).routes() {
		id := rt.method + " " + rt.path
		inRoutes[id] = true
		raw, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("route %s is not in openapi.json", id)
			continue
		}
		var op struct {
			Scope string `json:"x-scope"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if scope := op.Scope; scope != rt.scope {
			t.Errorf("%s: openapi x-scope %q, route scope %q", id, scope, rt.scope)
		}
	}
	for path, item := range doc.Paths {
		for method := range item {
			if method == "parameters" {
				continue
			}
			if id := strings.ToUpper(method) + " " + path; !inRoutes[id] {
				t.Errorf("openapi.json has %s, routes.go does not", id)
			}
		}
	}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{}})
	if rec := do(t, h, "GET", "/v3/openapi.json", "", ""); rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), openAPI) {
		t.Errorf("GET /v3/openapi.json: %d", rec.Code)
	}
	if rec := do(t, h, "GET", "/healthz", "", ""); rec.Code != 200 {
		t.Errorf("GET /healthz: %d", rec.Code)
	}
}

func TestAssembleOpenAPIRejectsDuplicates(t *testing.T) {
	core := `{"openapi":"3.1.0","paths":{"/a":{"get":{}}},"components":{"schemas":{"S":{}}}}`
	for name, frag := range map[string]string{
		"operation": `{"paths":{"/a":{"get":{}}}}`,
		"schema":    `{"components":{"schemas":{"S":{}}}}`,
	} {
		fsys := fstest.MapFS{
			"openapi/core.json": {Data: []byte(core)},
			"openapi/x.json":    {Data: []byte(frag)},
		}
		if _, err := assembleOpenAPI(fsys); err == nil {
			t.Errorf("%s defined twice: no error", name)
		}
	}
	fsys := fstest.MapFS{
		"openapi/core.json": {Data: []byte(core)},
		"openapi/x.json":    {Data: []byte(`{"paths":{"/a":{"post":{}},"/b":{"get":{}}},"components":{"schemas":{"T":{}}}}`)},
	}
	doc, err := assembleOpenAPI(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Paths      map[string]map[string]any
		Components struct{ Schemas map[string]any }
	}
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Paths["/a"]) != 2 || len(got.Paths["/b"]) != 1 || len(got.Components.Schemas) != 2 {
		t.Errorf("merged: %s", doc)
	}
}

// TestCoreRoutesAnswerPerTheDocument calls every route of the core table
// with a good request and data to show; do validates each answer against
// the OpenAPI document (status declared, body matching its schema).
func TestCoreRoutesAnswerPerTheDocument(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{rows: []analytics.StatsRow{{Period: "2026-11-02", Key: "x", Counts: analytics.StatCounts{Processed: 5, Opens: 1}}}}
	kim := suppression.Entry{Email: "Kim@Example.com", EmailNorm: "kim@example.com", Created: time.Unix(1764201600, 0), Reason: "550 5.1.1 user unknown", Status: "5.1.1", Classification: "Invalid Address"}
	for _, l := range []string{suppression.ListBounces, suppression.ListBlocks, suppression.ListInvalidEmails, suppression.ListSpamReports, suppression.ListUnsubscribes} {
		st.seed("acme", l, 0, kim)
	}
	st.seed("acme", suppression.ListUnsubscribes, 7, kim)
	fa := &fakeActivity{
		msgs:   []analytics.ActivityMessage{{MsgID: "m1", FromEmail: "f@x.io", Subject: "Hi", ToEmail: "a@b.c", Status: "delivered", LastEventTime: time.Unix(1764201600, 0)}},
		events: map[string][]analytics.ActivityEvent{"acme/m1": {{Event: "delivered", Time: time.Unix(1764201600, 0)}}},
	}
	h := NewServer(Config{Store: st, Stats: st, Activity: fa, Checker: fakeChecker{"acme": "kim@example.com"}, Keys: fakeKeys{k}, RateLimit: 1000,
		Now: func() time.Time { return time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC) }})
	calls := []struct{ method, path, body string }{
		{"GET", "/healthz", ""},
		{"GET", "/openapi.json", ""},
		{"GET", "/v3/openapi.json", ""},
		{"GET", "/v3/suppression/bounces/classifications", ""},
		{"GET", "/v3/suppression/bounces/classifications/Content", ""},
		{"POST", "/v3/asm/suppressions/global", `{"recipient_emails":["a@x.org"]}`},
		{"GET", "/v3/asm/suppressions/global/kim%40example.com", ""},
		{"DELETE", "/v3/asm/suppressions/global/kim%40example.com", ""},
		{"GET", "/v3/asm/groups/7/suppressions", ""},
		{"POST", "/v3/asm/groups/7/suppressions", `{"recipient_emails":["a@x.org"]}`},
		{"DELETE", "/v3/asm/groups/7/suppressions/a%40x.org", ""},
		{"GET", "/v3/stats?start_date=2026-11-01", ""},
		{"GET", "/v3/categories/stats?start_date=2026-11-01&categories=x", ""},
		{"GET", "/v3/mailbox_providers/stats?start_date=2026-11-01", ""},
		{"GET", "/bouncer/v1/stats/domains?start_date=2026-11-01&domains=x", ""},
		{"GET", "/v3/messages?query=" + url.QueryEscape(`to_email="a@b.c"`), ""},
		{"GET", "/v3/messages/m1", ""},
		{"POST", "/bouncer/v1/suppressions/check", `{"emails":["kim@example.com","b@x.org"]}`},
	}
	for _, l := range lists {
		calls = append(calls, struct{ method, path, body string }{"GET", "/v3/suppression/" + l + "?limit=10", ""})
	}
	for _, l := range deletable {
		calls = append(calls,
			struct{ method, path, body string }{"GET", "/v3/suppression/" + l + "/kim%40example.com", ""},
			struct{ method, path, body string }{"DELETE", "/v3/suppression/" + l + "/kim%40example.com", ""},
			struct{ method, path, body string }{"DELETE", "/v3/suppression/" + l, `{"emails":["kim@example.com"]}`},
			struct{ method, path, body string }{"DELETE", "/v3/suppression/" + l, `{"delete_all":true}`},
		)
	}
	for _, c := range calls {
		if rec := do(t, h, c.method, c.path, token, c.body); rec.Code < 200 || rec.Code > 299 {
			t.Errorf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
	}
}

// TestRateLimitShare: with Replicas 2, a process holds half the key's
// bucket and rate, and its headers count for the deployment.
func TestRateLimitShare(t *testing.T) {
	a, ka := testKey(t, "acme", false)
	c := &clock{t: time.Unix(1764201600, 0)}
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{ka}, Now: c.now, RateLimit: 4, Replicas: 2})
	for i, wantRemaining := range []string{"2", "0"} {
		rec := do(t, h, "GET", "/v3/suppression/bounces", a, "")
		if rec.Code != 200 || rec.Header().Get("X-RateLimit-Limit") != "4" || rec.Header().Get("X-RateLimit-Remaining") != wantRemaining {
			t.Fatalf("request %d: %d, limit %q remaining %q; want 200, 4, %s", i+1, rec.Code,
				rec.Header().Get("X-RateLimit-Limit"), rec.Header().Get("X-RateLimit-Remaining"), wantRemaining)
		}
	}
	if rec := do(t, h, "GET", "/v3/suppression/bounces", a, ""); rec.Code != 429 {
		t.Fatalf("third request in the same instant on one of two processes: %d, want 429", rec.Code)
	}
	c.add(500 * time.Millisecond) // 2 a second here: one token back
	if rec := do(t, h, "GET", "/v3/suppression/bounces", a, ""); rec.Code != 200 {
		t.Errorf("after half a second: %d, want 200", rec.Code)
	}
	if rec := do(t, h, "GET", "/v3/suppression/bounces", a, ""); rec.Code != 429 {
		t.Errorf("a second request after half a second: %d, want 429 (this process's rate is 2 a second)", rec.Code)
	}
}
