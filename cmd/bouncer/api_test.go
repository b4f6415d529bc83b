package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// apiFixture is a bouncer API on a fresh ClickHouse database, with a
// settable clock and a key for each of two accounts.
type apiFixture struct {
	store  *clickhouse.Store
	index  *suppression.Index // the batch check's, fed by the test
	env    map[string]string  // CLICKHOUSE_ADDR and CLICKHOUSE_DATABASE
	url    string
	keyA   string // account "acme"
	keyB   string // account "globex"
	mu     sync.Mutex
	now    time.Time
	client *http.Client
}

func (f *apiFixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *apiFixture) setClock(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.mu.Unlock()
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db}
	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &apiFixture{store: st, now: time.Unix(1764201600, 0).UTC(), client: &http.Client{Timeout: 30 * time.Second}}
	f.env = env
	f.keyA = createKey(t, env, "acme")
	f.keyB = createKey(t, env, "globex")
	keyring, err := secrets.ParseKeyring(base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	as := newAPIStore(st, nil)
	subs := subscription.NewService(st, keyring, safedial.Guard{Allow: []safedial.Rule{safedial.RuleFor(netip.MustParseAddrPort("127.0.0.1:9"))}}, kafkatier.NewReplayer(st, consumer.Conn{}))
	f.index = suppression.New()
	srv := httptest.NewServer(api.NewServer(api.Config{Store: as, Stats: st, Activity: st, Privacy: as.Service, Forwarding: st, BouncePurge: st, Groups: as.Service, Webhooks: subs,
		WebhookOps: subs, Dashboard: st, Checker: f.index, Keys: st, Now: f.clock, RateLimit: 10000}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

var keyLine = regexp.MustCompile(`(?m)^SG\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)

// createKey runs `bouncer keys create` and returns the key it printed.
func createKey(t *testing.T, env map[string]string, account string) string {
	t.Helper()
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"bouncer", "keys", "create", "--account", account, "--name", "test"}, envFunc(env), strings.NewReader(""), &stdout, &stderr)
	key := keyLine.FindString(stdout.String())
	if err != nil || key == "" {
		t.Fatalf("keys create: %v\nstdout %q\nstderr %q", err, stdout.String(), stderr.String())
	}
	return key
}

// call makes a request and returns the status and body.
func (f *apiFixture) call(t *testing.T, key, method, path, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// emails lists a list's addresses as key's account sees them.
func (f *apiFixture) emails(t *testing.T, key, path string) []string {
	t.Helper()
	code, body, _ := f.call(t, key, "GET", path, "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var es []struct {
		Email string `json:"email"`
	}
	if err := json.Unmarshal([]byte(body), &es); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Email)
	}
	return out
}

// addEntry writes a list entry as the worker does, with event time at.
func (f *apiFixture) addEntry(t *testing.T, account, list, email string, at time.Time) {
	t.Helper()
	err := f.store.WriteSuppressions(context.Background(), []suppression.Change{{
		AccountID: account, List: list, Email: email, EmailNorm: strings.ToLower(email), At: at,
		Reason: "550 5.1.1 user unknown", Status: "5.1.1", Classification: "Invalid Address", Source: "event:test",
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAPIListFiltersAndPagination(t *testing.T) {
	f := newAPIFixture(t)
	t0 := f.clock()
	for i, e := range []string{"Sales1@Example.com", "sales2@example.com", "ops@example.com", "a_b@example.com", "axb@example.com"} {
		f.addEntry(t, "acme", "bounces", e, t0.Add(time.Duration(i)*time.Minute))
	}
	f.addEntry(t, "acme", "spam_reports", "spam@example.com", t0)

	code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces?limit=2", "")
	want := `[{"created":1764201840,"email":"axb@example.com","reason":"550 5.1.1 user unknown","status":"5.1.1"},{"created":1764201780,"email":"a_b@example.com","reason":"550 5.1.1 user unknown","status":"5.1.1"}]`
	if code != 200 || strings.TrimSpace(body) != want {
		t.Errorf("first page: %d %s\nwant %s", code, body, want)
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"axb@example.com", "a_b@example.com", "ops@example.com", "sales2@example.com", "Sales1@Example.com"}},
		{"?limit=2&offset=2", []string{"ops@example.com", "sales2@example.com"}},
		{"?offset=5", []string{}},
		{"?email=SALES", []string{"sales2@example.com", "Sales1@Example.com"}},
		{"?email=a_", []string{"a_b@example.com"}},    // _ is not a wildcard
		{"?email=%25_b", []string{"a_b@example.com"}}, // %25 is SendGrid's wildcard
		{"?email=ops%40example.com", []string{"ops@example.com"}},
		{fmt.Sprintf("?start_time=%d&end_time=%d", t0.Unix()+60, t0.Unix()+120), []string{"ops@example.com", "sales2@example.com"}},
		{fmt.Sprintf("?end_time=%d", t0.Unix()), []string{"Sales1@Example.com"}},
	} {
		if got := f.emails(t, f.keyA, "/v3/suppression/bounces"+c.query); !slices.Equal(got, c.want) {
			t.Errorf("bounces%s: %v, want %v", c.query, got, c.want)
		}
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces?limit=501", ""); code != 400 || !strings.Contains(body, `"field":"limit"`) {
		t.Errorf("limit=501: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces/SALES1%40example.COM", ""); code != 200 || !strings.Contains(body, `"email":"Sales1@Example.com"`) {
		t.Errorf("one entry, case-insensitive: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/blocks/sales1%40example.com", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("not on blocks: %d %s, want []", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/spam_reports", ""); code != 200 || strings.TrimSpace(body) != `[{"created":1764201600,"email":"spam@example.com","ip":""}]` {
		t.Errorf("spam_reports shape: %d %s", code, body)
	}
}

func TestAPIDeleteOrdersByEventTime(t *testing.T) {
	f := newAPIFixture(t)
	T := f.clock()
	before, after := T.Add(-10*time.Second), T.Add(10*time.Second)
	del := func(email string) {
		t.Helper()
		if code, body, _ := f.call(t, f.keyA, "DELETE", "/v3/suppression/bounces/"+email, ""); code != 204 {
			t.Fatalf("DELETE %s: %d %s", email, code, body)
		}
	}
	// The API delete at T, and a bounce from before or after T, in both
	// orders of arrival.
	del("delete-then-earlier@x.org")
	f.addEntry(t, "acme", "bounces", "delete-then-earlier@x.org", before)
	del("delete-then-later@x.org")
	f.addEntry(t, "acme", "bounces", "delete-then-later@x.org", after)
	f.addEntry(t, "acme", "bounces", "earlier-then-delete@x.org", before)
	del("earlier-then-delete@x.org")
	f.addEntry(t, "acme", "bounces", "later-then-delete@x.org", after)
	del("later-then-delete@x.org")
	// A bounce dated after T that is already listed when the delete comes
	// (later-then-delete: dated ahead of the server's clock) is removed
	// too: a delete always takes effect (issue 16, finding 5). One that
	// arrives after the delete puts its address back.
	got := f.emails(t, f.keyA, "/v3/suppression/bounces")
	slices.Sort(got)
	if want := []string{"delete-then-later@x.org"}; !slices.Equal(got, want) {
		t.Errorf("after deletes at T and bounces at T-10s / T+10s: %v, want %v (only the later bounce that came after the delete)", got, want)
	}

	// Bulk delete by emails and delete_all, at a later clock.
	f.setClock(T.Add(time.Hour))
	f.addEntry(t, "acme", "blocks", "b1@x.org", T)
	f.addEntry(t, "acme", "blocks", "b2@x.org", T)
	f.addEntry(t, "acme", "blocks", "b3@x.org", T)
	if code, body, _ := f.call(t, f.keyA, "DELETE", "/v3/suppression/blocks", `{"emails":["B1@x.org"," b2@x.org"]}`); code != 204 {
		t.Fatalf("bulk delete: %d %s", code, body)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/blocks"); !slices.Equal(got, []string{"b3@x.org"}) {
		t.Errorf("after bulk delete of b1, b2: %v", got)
	}
	if code, body, _ := f.call(t, f.keyA, "DELETE", "/v3/suppression/blocks", `{"delete_all":true}`); code != 204 {
		t.Fatalf("delete_all: %d %s", code, body)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/blocks"); len(got) != 0 {
		t.Errorf("after delete_all: %v", got)
	}
	f.addEntry(t, "acme", "blocks", "b3@x.org", T.Add(2*time.Hour))
	if got := f.emails(t, f.keyA, "/v3/suppression/blocks"); !slices.Equal(got, []string{"b3@x.org"}) {
		t.Errorf("a block after delete_all: %v, want it back", got)
	}

	// Global unsubscribes: add, read, list, remove.
	if code, body, _ := f.call(t, f.keyA, "POST", "/v3/asm/suppressions/global", `{"recipient_emails":["U1@x.org","u2@x.org"]}`); code != 201 || strings.TrimSpace(body) != `{"recipient_emails":["U1@x.org","u2@x.org"]}` {
		t.Fatalf("global add: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/asm/suppressions/global/u1%40X.org", ""); code != 200 || strings.TrimSpace(body) != `{"recipient_email":"U1@x.org"}` {
		t.Errorf("global get: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "DELETE", "/v3/asm/suppressions/global/u1%40x.org", ""); code != 204 {
		t.Errorf("global delete: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/asm/suppressions/global/u1%40x.org", ""); code != 200 || strings.TrimSpace(body) != `{}` {
		t.Errorf("global get after delete: %d %s, want {}", code, body)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/unsubscribes"); !slices.Equal(got, []string{"u2@x.org"}) {
		t.Errorf("unsubscribes: %v", got)
	}
}

// TestAPICommand runs `bouncer keys create`, then `bouncer api`, makes
// requests with the key, hits the rate limit, revokes the key, and stops
// the server with a cancelled context (as SIGTERM does).
func TestAPICommand(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	brokers := testenv.Kafka(t)
	changelog := testenv.Topic(t, brokers, 2)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_ADDR": "127.0.0.1:0",
		"KAFKA_BROKERS": brokers, "BOUNCER_CHANGELOG_TOPIC": changelog}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	key := createKey(t, env, "acme")
	// A second key of the account: its own rate-limit bucket, so the
	// requests after the 429 need not wait for key's to refill.
	key2 := createKey(t, env, "acme")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bouncer", "api", "--rate-limit", "3"}, envFunc(env), strings.NewReader(""), logs, logs)
	}()
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	var base string
	waitFor(t, "api listening", 30*time.Second, func() (bool, string) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
			return true, ""
		}
		return false, logs.String()
	})
	get := func(path, key string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	if resp, body := get("/v3/suppression/bounces", key); resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("with the new key: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/v3/suppression/bounces", key+"x"); resp.StatusCode != 401 || strings.TrimSpace(body) != `{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}` {
		t.Errorf("wrong key: %d %s", resp.StatusCode, body)
	}
	var limited *http.Response
	for range 10 {
		if resp, _ := get("/v3/suppression/bounces", key); resp.StatusCode == 429 {
			limited = resp
			break
		}
	}
	if limited == nil {
		t.Fatal("10 quick requests at --rate-limit 3: no 429")
	}
	if h := limited.Header; h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != "0" || h.Get("X-RateLimit-Reset") == "" {
		t.Errorf("429 headers: %v", h)
	}

	// A list change through the API is published to the change log that
	// the workers' index follows.
	req, _ := http.NewRequest("POST", base+"/v3/asm/suppressions/global", strings.NewReader(`{"recipient_emails":["Kim@Example.com"]}`))
	req.Header.Set("Authorization", "Bearer "+key2)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST global unsubscribe: %d", resp.StatusCode)
	}
	if keys := readTopicKeys(t, brokers, changelog); !keys["acme/unsubscribes/0/kim@example.com"] {
		t.Errorf("the API's change is not on the change log: %v", keys)
	}
	// The batch check answers from the API's in-memory copy, which follows
	// the change log: the unsubscribe shows within seconds.
	waitFor(t, "batch check sees the unsubscribe", 20*time.Second, func() (bool, string) {
		req, _ := http.NewRequest("POST", base+"/bouncer/v1/suppressions/check", strings.NewReader(`{"emails":["KIM@example.com","other@example.com"]}`))
		req.Header.Set("Authorization", "Bearer "+key2)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var got struct {
			Results []struct {
				Email      string `json:"email"`
				Suppressed bool   `json:"suppressed"`
				DropReason string `json:"drop_reason"`
				Lists      []struct {
					List string `json:"list"`
				} `json:"lists"`
			} `json:"results"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil || len(got.Results) != 2 {
			return false, fmt.Sprint(resp.StatusCode, string(b))
		}
		r0, r1 := got.Results[0], got.Results[1]
		ok := r0.Email == "KIM@example.com" && r0.Suppressed && r0.DropReason == "Unsubscribed Address" &&
			len(r0.Lists) == 1 && r0.Lists[0].List == "unsubscribes" && !r1.Suppressed && len(r1.Lists) == 0
		return ok, string(b)
	})

	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "keys", "list", "--account", "acme"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatal(err)
	}
	keyID := strings.Split(key, ".")[1]
	if !strings.Contains(out.String(), keyID) || !strings.Contains(out.String(), "active") || strings.Contains(out.String(), strings.Split(key, ".")[2]) {
		t.Errorf("keys list: %s", out.String())
	}
	out = syncBuffer{}
	if err := run(context.Background(), []string{"bouncer", "keys", "revoke", keyID}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("revoke: %v %s", err, out.String())
	}
	waitFor(t, "revoked key refused", 20*time.Second, func() (bool, string) {
		resp, body := get("/v3/suppression/bounces", key)
		return resp.StatusCode == 401, fmt.Sprint(resp.StatusCode, body)
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("api stopped with %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("api did not stop within 30s of cancel")
	}
	if !strings.Contains(logs.String(), "api stopped") || !strings.Contains(logs.String(), `route="GET /v3/suppression/bounces"`) {
		t.Errorf("logs lack the stop or the request lines:\n%s", logs.String())
	}
}

func TestAPIGroupSuppressions(t *testing.T) {
	f := newAPIFixture(t)
	list := func(key, group string) string {
		code, body, _ := f.call(t, key, "GET", "/v3/asm/groups/"+group+"/suppressions", "")
		if code != 200 {
			t.Fatalf("GET group %s: %d %s", group, code, body)
		}
		return strings.TrimSpace(body)
	}
	if code, body, _ := f.call(t, f.keyA, "POST", "/v3/asm/groups/7/suppressions", `{"recipient_emails":["a@x.org","B@x.org"]}`); code != 201 {
		t.Fatalf("POST: %d %s", code, body)
	}
	if got := list(f.keyA, "7"); !strings.Contains(got, `"a@x.org"`) || !strings.Contains(got, `"B@x.org"`) {
		t.Errorf("group 7: %s", got)
	}
	if got := list(f.keyA, "8"); got != "[]" {
		t.Errorf("group 8 should be empty: %s", got)
	}
	if got := list(f.keyB, "7"); got != "[]" {
		t.Errorf("another account sees group 7 of acme: %s", got)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/unsubscribes", ""); code != 200 || strings.Contains(body, "a@x.org") {
		t.Errorf("a group unsubscribe showed up as a global one: %d %s", code, body)
	}
	f.setClock(f.clock().Add(time.Second))
	if code, body, _ := f.call(t, f.keyA, "DELETE", "/v3/asm/groups/7/suppressions/b@X.org", ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if got := list(f.keyA, "7"); got != `["a@x.org"]` {
		t.Errorf("after resubscribing b: %s", got)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/asm/groups/zero/suppressions", ""); code != 400 || !strings.Contains(body, `"field":"group_id"`) {
		t.Errorf("bad group id: %d %s", code, body)
	}
}

// Tenancy: account globex (B), with its own key, tries every authenticated
// route of the table on account acme's (A) data, with A's identifiers in
// the path, the query and the body, spelled and encoded every way we could
// think of; it must never see or change any of it.

// tenancyVictim is A's data the attempts aim at.
type tenancyVictim struct {
	Email string // on every list of A, in A's events and dead letters
	MsgID string // A's message
	// IDs holds identifiers of resources areas create for A in their
	// setups (a webhook id, ...).
	IDs map[string]string
}

// tenancyAttempt is one request B makes. In Path and Body, {email} is
// replaced by each spelling of A's address (percent-encoded variants in
// paths), {msg} by A's message id and {id:NAME} by IDs[NAME]. Every path is
// also tried with a trailing slash, dot segments, %2e%2e, a double slash and
// in upper case.
type tenancyAttempt struct{ Method, Path, Body string }

// tenancyExercises maps "METHOD /pattern" of every authenticated route to
// its attempts. An area that adds routes registers theirs from its own
// test file, in an init function, with setups that create A's resources and
// checks that they are unchanged afterwards:
//
//	func init() {
//		tenancyExercises["GET /v3/things/{id}"] = func(v *tenancyVictim) []tenancyAttempt {
//			return []tenancyAttempt{{"GET", "/v3/things/{id:thing}", ""}}
//		}
//		tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) { ... v.IDs["thing"] = ... })
//		tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) { ... })
//	}
var (
	tenancyExercises = map[string]func(v *tenancyVictim) []tenancyAttempt{}
	tenancySetups    []func(t *testing.T, f *apiFixture, v *tenancyVictim)
	tenancyChecks    []func(t *testing.T, f *apiFixture, v *tenancyVictim)
)

func tries(as ...tenancyAttempt) func(*tenancyVictim) []tenancyAttempt {
	return func(*tenancyVictim) []tenancyAttempt { return as }
}

func init() {
	e := tenancyExercises
	e["GET /v3/suppression/bounces/classifications"] = tries(tenancyAttempt{"GET", "/v3/suppression/bounces/classifications?start_date=2025-01-01&account_id=acme", ""})
	e["GET /v3/suppression/bounces/classifications/{classification}"] = tries(tenancyAttempt{"GET", "/v3/suppression/bounces/classifications/Invalid%20Address?on-behalf-of=acme", ""})
	e["POST /v3/asm/suppressions/global"] = tries(tenancyAttempt{"POST", "/v3/asm/suppressions/global", `{"recipient_emails":["{email}"]}`})
	e["GET /v3/asm/suppressions/global/{email}"] = tries(tenancyAttempt{"GET", "/v3/asm/suppressions/global/{email}", ""})
	e["DELETE /v3/asm/suppressions/global/{email}"] = tries(tenancyAttempt{"DELETE", "/v3/asm/suppressions/global/{email}", ""})
	e["GET /v3/asm/groups/{group_id}/suppressions"] = tries(tenancyAttempt{"GET", "/v3/asm/groups/7/suppressions", ""})
	e["POST /v3/asm/groups/{group_id}/suppressions"] = tries(tenancyAttempt{"POST", "/v3/asm/groups/7/suppressions", `{"recipient_emails":["{email}"]}`})
	e["DELETE /v3/asm/groups/{group_id}/suppressions/{email}"] = tries(tenancyAttempt{"DELETE", "/v3/asm/groups/7/suppressions/{email}", ""})
	e["GET /v3/stats"] = tries(tenancyAttempt{"GET", "/v3/stats?start_date=2025-11-01&end_date=2025-11-30", ""})
	e["GET /v3/categories/stats"] = tries(tenancyAttempt{"GET", "/v3/categories/stats?start_date=2025-11-01&end_date=2025-11-30&categories=acme-cat", ""})
	e["GET /v3/mailbox_providers/stats"] = tries(tenancyAttempt{"GET", "/v3/mailbox_providers/stats?start_date=2025-11-01&end_date=2025-11-30", ""})
	e["GET /bouncer/v1/stats/domains"] = tries(tenancyAttempt{"GET", "/bouncer/v1/stats/domains?start_date=2025-11-01&end_date=2025-11-30&domains=acme.org", ""})
	e["GET /v3/messages"] = tries(
		tenancyAttempt{"GET", "/v3/messages?limit=1000&query=" + url.QueryEscape(`to_email="victim@acme.org"`), ""},
		tenancyAttempt{"GET", "/v3/messages?query=" + url.QueryEscape(`msg_id="acme-msg-1" OR status="not_delivered"`), ""})
	e["GET /v3/messages/{msg_id}"] = tries(tenancyAttempt{"GET", "/v3/messages/{msg}", ""})
	e["POST /bouncer/v1/suppressions/check"] = tries(tenancyAttempt{"POST", "/bouncer/v1/suppressions/check", `{"emails":["{email}"],"group_id":7}`})
	e["POST /bouncer/v1/privacy/erasures"] = tries(tenancyAttempt{"POST", "/bouncer/v1/privacy/erasures", `{"email":"{email}"}`})
	e["GET /bouncer/v1/privacy/erasures"] = tries(tenancyAttempt{"GET", "/bouncer/v1/privacy/erasures?limit=500", ""})
	e["GET /bouncer/v1/suppressions/{list}/export"] = tries(
		tenancyAttempt{"GET", "/bouncer/v1/suppressions/bounces/export", ""},
		tenancyAttempt{"GET", "/bouncer/v1/suppressions/unsubscribes/export?group_id=7", ""})
	e["POST /bouncer/v1/suppressions/{list}/import"] = tries(tenancyAttempt{"POST", "/bouncer/v1/suppressions/bounces/import", "email,created\n{email},1\n"})
	// The list routes.
	for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"} {
		e["GET /v3/suppression/"+l] = tries(
			tenancyAttempt{"GET", "/v3/suppression/" + l + "?limit=500", ""},
			tenancyAttempt{"GET", "/v3/suppression/" + l + "?email={email}&account_id=acme", ""},
			tenancyAttempt{"GET", "/v3/suppression/" + l + "?email=%25", ""})
		if l == "unsubscribes" {
			continue
		}
		e["GET /v3/suppression/"+l+"/{email}"] = tries(tenancyAttempt{"GET", "/v3/suppression/" + l + "/{email}", ""})
		e["DELETE /v3/suppression/"+l+"/{email}"] = tries(tenancyAttempt{"DELETE", "/v3/suppression/" + l + "/{email}", ""})
		e["DELETE /v3/suppression/"+l] = tries(
			tenancyAttempt{"DELETE", "/v3/suppression/" + l, `{"emails":["{email}"]}`},
			tenancyAttempt{"DELETE", "/v3/suppression/" + l, `{"delete_all":true}`})
	}
	// Bounce forwarding and the dashboard's queries (routes of other areas
	// that were in the table before this registry existed).
	e["GET /v3/mail_settings/forward_bounce"] = tries(tenancyAttempt{"GET", "/v3/mail_settings/forward_bounce?account_id=acme", ""})
	e["PATCH /v3/mail_settings/forward_bounce"] = tries(tenancyAttempt{"PATCH", "/v3/mail_settings/forward_bounce", `{"enabled":true,"email":"{email}"}`})
	e["GET /bouncer/v1/stats/bounce_reasons"] = tries(tenancyAttempt{"GET", "/bouncer/v1/stats/bounce_reasons?start_date=2025-11-01&end_date=2025-11-30", ""})
	e["GET /bouncer/v1/stats/top_domains"] = tries(tenancyAttempt{"GET", "/bouncer/v1/stats/top_domains?start_date=2025-11-01&end_date=2025-11-30", ""})
	tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		if code, body, _ := f.call(t, f.keyA, "PATCH", "/v3/mail_settings/forward_bounce", `{"enabled":true,"email":"fwd-victim@acme.org"}`); code != 200 {
			t.Fatalf("acme sets its bounce forwarding: %d %s", code, body)
		}
	})
	tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		if code, body, _ := f.call(t, f.keyA, "GET", "/v3/mail_settings/forward_bounce", ""); code != 200 || !strings.Contains(body, `"fwd-victim@acme.org"`) || !strings.Contains(body, `"enabled":true`) {
			t.Errorf("acme's bounce forwarding after globex's attempts: %d %s", code, body)
		}
	})
}

// The webhook subscriptions (routes of the webhook area that were in the
// table before this registry existed).
func init() {
	e := tenancyExercises
	const base = "/v3/user/webhooks/event"
	e["POST "+base+"/settings"] = tries(tenancyAttempt{"POST", base + "/settings", `{"enabled":true,"url":"http://127.0.0.1:9/{email}","bounce":true,"id":"{id:webhook}"}`})
	e["GET "+base+"/settings/all"] = tries(tenancyAttempt{"GET", base + "/settings/all?account_id=acme", ""})
	e["GET "+base+"/settings/{id}"] = tries(tenancyAttempt{"GET", base + "/settings/{id:webhook}", ""})
	e["PATCH "+base+"/settings/{id}"] = tries(tenancyAttempt{"PATCH", base + "/settings/{id:webhook}", `{"enabled":false,"url":"http://127.0.0.1:9/stolen"}`})
	e["DELETE "+base+"/settings/{id}"] = tries(tenancyAttempt{"DELETE", base + "/settings/{id:webhook}", ""})
	e["GET "+base+"/settings/signed/{id}"] = tries(tenancyAttempt{"GET", base + "/settings/signed/{id:webhook}", ""})
	e["PATCH "+base+"/settings/signed/{id}"] = tries(tenancyAttempt{"PATCH", base + "/settings/signed/{id:webhook}", `{"enabled":false}`})
	e["POST "+base+"/test"] = tries(tenancyAttempt{"POST", base + "/test", `{"id":"{id:webhook}"}`})
	e["GET /bouncer/v1/webhooks/{id}/secret"] = tries(tenancyAttempt{"GET", "/bouncer/v1/webhooks/{id:webhook}/secret", ""})
	e["POST /bouncer/v1/webhooks/{id}/secret/rotate"] = tries(tenancyAttempt{"POST", "/bouncer/v1/webhooks/{id:webhook}/secret/rotate", ""})
	// Delivery state, log and replays of a subscription.
	ops := "/bouncer/v1/webhooks/{id}"
	e["GET "+ops+"/state"] = tries(tenancyAttempt{"GET", "/bouncer/v1/webhooks/{id:webhook}/state", ""})
	e["GET "+ops+"/deliveries"] = tries(tenancyAttempt{"GET", "/bouncer/v1/webhooks/{id:webhook}/deliveries?limit=500", ""})
	e["GET "+ops+"/failed"] = tries(tenancyAttempt{"GET", "/bouncer/v1/webhooks/{id:webhook}/failed", ""})
	e["POST "+ops+"/failed/{webhook_id}/replay"] = tries(tenancyAttempt{"POST", "/bouncer/v1/webhooks/{id:webhook}/failed/{id:webhook}/replay", ""})
	e["POST "+ops+"/replay"] = tries(tenancyAttempt{"POST", "/bouncer/v1/webhooks/{id:webhook}/replay", `{"since":0}`})
	leaks = append(leaks, "victim-hook", "acme-hook")
	var before, signedBefore string
	tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		code, body, _ := f.call(t, f.keyA, "POST", base+"/settings", `{"enabled":true,"url":"http://127.0.0.1:9/victim-hook","bounce":true,"friendly_name":"acme-hook"}`)
		var w struct {
			ID string `json:"id"`
		}
		if code != 201 || json.Unmarshal([]byte(body), &w) != nil || w.ID == "" {
			t.Fatalf("acme creates a webhook: %d %s", code, body)
		}
		v.IDs["webhook"] = w.ID
		if code, body, _ := f.call(t, f.keyA, "PATCH", base+"/settings/signed/"+w.ID, `{"enabled":true}`); code != 200 {
			t.Fatalf("acme turns signing on: %d %s", code, body)
		}
		code, before, _ = f.call(t, f.keyA, "GET", "/bouncer/v1/webhooks/"+w.ID+"/secret", "")
		if code != 200 {
			t.Fatalf("acme reads its secret: %d %s", code, before)
		}
		code, signedBefore, _ = f.call(t, f.keyA, "GET", base+"/settings/signed/"+w.ID, "")
		if code != 200 || !strings.Contains(signedBefore, `"public_key":"M`) {
			t.Fatalf("acme reads its signing key: %d %s", code, signedBefore)
		}
	})
	tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		id := v.IDs["webhook"]
		code, body, _ := f.call(t, f.keyA, "GET", base+"/settings/"+id, "")
		if code != 200 || !strings.Contains(body, "victim-hook") || !strings.Contains(body, `"enabled":true`) || !strings.Contains(body, "acme-hook") {
			t.Errorf("acme's webhook after globex's attempts: %d %s", code, body)
		}
		if code, body, _ := f.call(t, f.keyA, "GET", base+"/settings/signed/"+id, ""); code != 200 || body != signedBefore {
			t.Errorf("acme's webhook signing after globex's attempts: %d %s", code, body)
		}
		if code, after, _ := f.call(t, f.keyA, "GET", "/bouncer/v1/webhooks/"+id+"/secret", ""); code != 200 || after != before {
			t.Errorf("acme's webhook secret after globex's attempts: %d %s, was %s", code, after, before)
		}
	})
}

// pathSpellings are the ways A's address is written in a path.
var pathSpellings = []string{"victim%40acme.org", "VICTIM%40ACME.ORG", "%76ictim%40acme.org", "victim@acme.org", "victim%2540acme.org", "%20victim%40acme.org%20"}

// bodySpellings are the ways it is written in a body or a query.
var bodySpellings = []string{"victim@acme.org", "VICTIM@ACME.ORG", " Victim@Acme.Org "}

// pathVariants spells one path the ways a router may be fooled with.
func pathVariants(p string) []string {
	path, query, hasQuery := strings.Cut(p, "?")
	q := ""
	if hasQuery {
		q = "?" + query
	}
	first := strings.Index(path[1:], "/") + 1
	out := []string{p, path + "/" + q, "/" + path + q, strings.ToUpper(path) + q, "/x/.." + path + q, "/x/%2e%2e" + path + q}
	if first > 0 {
		out = append(out, path[:first]+"/."+path[first:]+q)
	}
	return out
}

func expandAttempt(a tenancyAttempt, v *tenancyVictim) []tenancyAttempt {
	sub := func(s, email string) string {
		s = strings.ReplaceAll(s, "{email}", email)
		s = strings.ReplaceAll(s, "{msg}", v.MsgID)
		for k, id := range v.IDs {
			s = strings.ReplaceAll(s, "{id:"+k+"}", id)
		}
		return s
	}
	var out []tenancyAttempt
	inPath := strings.Contains(a.Path, "{email}")
	spellings := bodySpellings
	if inPath {
		spellings = pathSpellings
	}
	if !inPath && !strings.Contains(a.Body, "{email}") {
		spellings = []string{v.Email}
	}
	for _, sp := range spellings {
		body := a.Body
		path := a.Path
		if inPath {
			path = sub(path, sp)
			body = sub(body, v.Email)
		} else {
			path = sub(path, url.QueryEscape(sp))
			body = sub(body, sp)
		}
		for _, p := range pathVariants(path) {
			out = append(out, tenancyAttempt{a.Method, p, body})
		}
	}
	return out
}

// leaks are strings of A's data that none of B's answers may hold: the
// address (unless B's own request carried it), A's message id and category,
// and counts or flags only A's data produces.
var leaks = []string{"acme-msg-1", "acme-cat", `"suppressed":true`, `"list":"`, "Invalid Address", "fwd-victim", `"bounces":1`, `"count":1`,
	"1764244800", "2025-11-27 12:00:00", "user unknown"}

func TestAPITenancy(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	v := &tenancyVictim{Email: "victim@acme.org", MsgID: "acme-msg-1", IDs: map[string]string{}}
	t0 := time.Date(2025, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"} {
		f.addEntry(t, "acme", l, v.Email, t0)
		f.index.Apply(suppression.Change{AccountID: "acme", List: l, EmailNorm: v.Email, At: t0})
	}
	if err := f.store.WriteSuppressions(ctx, []suppression.Change{{AccountID: "acme", List: "unsubscribes", GroupID: 7, EmailNorm: v.Email, Email: v.Email, At: t0}}); err != nil {
		t.Fatal(err)
	}
	f.index.Apply(suppression.Change{AccountID: "acme", List: "unsubscribes", GroupID: 7, EmailNorm: v.Email, At: t0})
	if err := f.store.WriteSuppressions(ctx, []suppression.Change{{AccountID: "globex", List: "bounces", EmailNorm: "own@globex.org",
		Email: "own@globex.org", At: t0.Add(-time.Hour), Reason: "550 mailbox gone", Status: "5.1.1"}}); err != nil {
		t.Fatal(err)
	}
	err := f.store.WriteEvents(ctx, []pipeline.Row{{
		Event: schemas.Event{Topic: "t", Event: "bounce", Type: "bounce", AccountID: "acme", SGEventID: "e1", SGMessageID: v.MsgID, Email: v.Email, EmailNorm: v.Email,
			Domain: "acme.org", Timestamp: t0.Unix(), Categories: []string{"acme-cat"}, Reason: "550 5.1.1 user unknown", Status: "5.1.1"},
		Bounce: &enrich.Result{BounceType: enrich.Hard, Classification: enrich.InvalidAddress, Reason: "user_unknown"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.WriteDeadLetters(ctx, []schemas.DeadLetter{{Topic: "t", Index: -1, Code: "bad_json", Raw: []byte(`{"account_id":"acme","email":"victim@acme.org",`)}}); err != nil {
		t.Fatal(err)
	}
	if err := f.store.WriteErasure(ctx, suppression.Erasure{AccountID: "acme", ID: "acme-erasure", EmailSHA256: suppression.EmailSHA256("old@acme.org"), RequestedBy: "key:acme-key", At: t0}); err != nil {
		t.Fatal(err)
	}
	for _, setup := range tenancySetups {
		setup(t, f, v)
	}

	// Every authenticated route must have an exercise.
	var missing []string
	for _, rt := range api.Routes() {
		if rt.Auth && tenancyExercises[rt.Method+" "+rt.Path] == nil {
			missing = append(missing, rt.Method+" "+rt.Path)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("TestAPITenancy does not know how to exercise %d authenticated routes:\n\t%s\n"+
			"register attempts for each (with setups and checks for the data they touch) in tenancyExercises, from an init function "+
			"in your area's test file in cmd/bouncer (see tenancyExercises in cmd/bouncer/api_test.go)",
			len(missing), strings.Join(missing, "\n\t"))
	}

	// Reads first, while globex has nothing of its own that mentions the
	// address: no answer may mention it. Then the writes, whose answers may
	// echo what globex sent, but nothing else of acme's.
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var reads, writes []tenancyAttempt
	imports := map[string]bool{}
	for _, rt := range api.Routes() {
		if !rt.Auth {
			continue
		}
		for _, base := range tenancyExercises[rt.Method+" "+rt.Path](v) {
			for _, a := range expandAttempt(base, v) {
				if strings.HasSuffix(rt.Path, "/import") {
					imports[a.Path] = true
				}
				if a.Method == "GET" {
					reads = append(reads, a)
				} else {
					writes = append(writes, a)
				}
			}
		}
	}
	n := 0
	for i, a := range append(reads, writes...) {
		n++
		req, err := http.NewRequest(a.Method, f.url+a.Path, strings.NewReader(a.Body))
		if err != nil {
			t.Fatalf("%s %s: %v", a.Method, a.Path, err)
		}
		req.Header.Set("Authorization", "Bearer "+f.keyB)
		req.Header.Set("on-behalf-of", "acme") // SendGrid's subuser header: not honoured
		req.Header.Set("X-Account-Id", "acme")
		if imports[a.Path] {
			req.Header.Set("Content-Type", "text/csv")
		} else if a.Body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", a.Method, a.Path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode >= 500 {
			t.Errorf("globex %s %s: %d %s", a.Method, a.Path, resp.StatusCode, body)
		}
		sent := a.Path + " " + a.Body
		if u, err := url.QueryUnescape(sent); err == nil {
			sent = u
		}
		sent = strings.ToLower(sent)
		for _, leak := range leaks {
			if strings.Contains(body, leak) && !strings.Contains(sent, strings.ToLower(leak)) {
				t.Errorf("globex %s %s sees acme's data (%s): %.300s", a.Method, a.Path, leak, body)
			}
		}
		if i < len(reads) && !strings.Contains(sent, "victim") && strings.Contains(strings.ToLower(body), "victim") {
			t.Errorf("globex %s %s sees acme's address: %.300s", a.Method, a.Path, body)
		}
	}
	t.Logf("%d requests by globex on %d routes", n, len(api.Routes()))

	// A's data is as it was.
	for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"} {
		if got := f.emails(t, f.keyA, "/v3/suppression/"+l); !slices.Equal(got, []string{v.Email}) {
			t.Errorf("acme's %s after globex's attempts: %v, want [%s]", l, got, v.Email)
		}
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/asm/groups/7/suppressions", ""); code != 200 || strings.TrimSpace(body) != `["victim@acme.org"]` {
		t.Errorf("acme's group 7: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/messages/"+v.MsgID, ""); code != 200 || !strings.Contains(body, v.Email) {
		t.Errorf("acme's message: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces/classifications?start_date=2025-11-01", ""); code != 200 || !strings.Contains(body, `"Invalid Address","count":1`) {
		t.Errorf("acme's own classifications: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/bouncer/v1/privacy/erasures", ""); code != 200 || strings.Count(body, `"id":`) != 1 || !strings.Contains(body, "acme-erasure") {
		t.Errorf("acme's erasure records: %d %s, want only its own one", code, body)
	}
	var dead uint64
	if err := f.store.Conn().QueryRow(ctx, "SELECT count() FROM dead_letters").Scan(&dead); err != nil || dead != 1 {
		t.Errorf("acme's dead letter after globex erased the address: %d rows (%v), want 1", dead, err)
	}
	if ls := f.index.Lookup("acme", v.Email); len(ls) != 6 {
		t.Errorf("acme's index entries: %+v", ls)
	}
	for _, check := range tenancyChecks {
		check(t, f, v)
	}
}

// startAPI runs `bouncer api` with env and extra args until the test ends
// and returns its base URL.
func startAPI(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"bouncer", "api"}, args...), envFunc(env), strings.NewReader(""), logs, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("api did not stop within 30s")
		}
	})
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	var base string
	waitFor(t, "api listening", 60*time.Second, func() (bool, string) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
			return true, ""
		}
		select {
		case err := <-done:
			t.Fatalf("api stopped: %v\n%s", err, logs.String())
		default:
		}
		return false, logs.String()
	})
	return base
}

func httpDo(t *testing.T, method, url, key, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEraseCommand: bouncer erase removes an address of one account from
// the tables, prints what it removed, records the erasure as requested by
// the CLI, and refuses a bad address as a usage error. (Erasure itself, its
// announcements and the API's route are tested in suppression.)
func TestEraseCommand(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
	ctx := context.Background()
	st := apitest.Store(t, clickhouse.Config{Addr: []string{addr}, Database: db})
	var rows []pipeline.Row
	for i, e := range []string{"kim@example.com", "lee@example.com"} {
		rows = append(rows, pipeline.Row{Event: schemas.Event{Topic: "t", Offset: int64(i), Event: "delivered", AccountID: "acme",
			SGEventID: "acme" + e, Email: strings.ToUpper(e[:1]) + e[1:], EmailNorm: e, Domain: "example.com", Timestamp: time.Now().Unix()}})
	}
	if err := st.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	err := run(ctx, []string{"bouncer", "erase", "--account", "acme", "--email", "Lee@Example.com", "--publish-changes=false"}, envFunc(env), strings.NewReader(""), &out, &errOut)
	if err != nil || !strings.Contains(out.String(), "events") || !strings.Contains(out.String(), "erased Lee@Example.com of acme: 1 rows") {
		t.Errorf("bouncer erase: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, c := range []struct {
		sql  string
		want uint64
	}{
		{"SELECT count() FROM events WHERE account_id = 'acme' AND email_norm = 'lee@example.com'", 0},
		{"SELECT count() FROM events WHERE account_id = 'acme'", 1},
		{"SELECT count() FROM erasures WHERE account_id = 'acme' AND requested_by LIKE 'cli%'", 1},
	} {
		var n uint64
		if err := st.Conn().QueryRow(ctx, c.sql).Scan(&n); err != nil || n != c.want {
			t.Errorf("%s: %d (%v), want %d", c.sql, n, err, c.want)
		}
	}
	err = run(ctx, []string{"bouncer", "erase", "--account", "acme", "--email", "not-an-address"}, envFunc(env), strings.NewReader(""), &out, &errOut)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--email") {
		t.Errorf("bouncer erase with a bad address: %v", err)
	}
}

// TestAPIImportExportCSV moves a list in and out over HTTP in SendGrid's
// CSV format, on real ClickHouse: an import shows in the list (classified),
// a bad file writes nothing, the export is what the CLI writes.
func TestAPIImportExportCSV(t *testing.T) {
	f := newAPIFixture(t)
	file := "email,created,status,reason\n" +
		"Kim@Example.com,2025-11-27 00:00:00,5.1.1,550 5.1.1 The email account that you tried to reach does not exist.\n" +
		"lee@example.com,1764288000,5.1.1,550 5.1.1 user unknown\n"
	req := func(method, path, body string) (int, string, http.Header) {
		t.Helper()
		r, _ := http.NewRequest(method, f.url+path, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+f.keyA)
		r.Header.Set("Content-Type", "text/csv")
		resp, err := f.client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, body, _ := req("POST", "/bouncer/v1/suppressions/bounces/import", file); code != 200 || strings.TrimSpace(body) != `{"imported":2}` {
		t.Fatalf("import: %d %s", code, body)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); !slices.Equal(got, []string{"lee@example.com", "Kim@Example.com"}) {
		t.Errorf("bounces after the import: %v", got)
	}
	if got := f.emails(t, f.keyB, "/v3/suppression/bounces"); len(got) != 0 {
		t.Errorf("globex sees acme's import: %v", got)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces/classifications", ""); code != 200 {
		t.Errorf("classifications: %d %s", code, body)
	}
	rows, err := f.store.Suppressions(context.Background(), "acme", suppression.Query{List: "bounces"})
	if err != nil || len(rows) != 2 || rows[1].Classification != "Invalid Address" {
		t.Errorf("imported rows are not classified: %+v %v", rows, err)
	}

	// A file with a bad row writes nothing.
	bad := "email,created\nok@example.com,\nnope,\n"
	code, body, _ := req("POST", "/bouncer/v1/suppressions/blocks/import", bad)
	if code != 400 || !strings.Contains(body, `"field":"line 3"`) || !strings.Contains(body, "nothing was imported") {
		t.Errorf("bad file: %d %s", code, body)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/blocks"); len(got) != 0 {
		t.Errorf("blocks after a bad file: %v, want none", got)
	}

	code, body, h := req("GET", "/bouncer/v1/suppressions/bounces/export", "")
	want := "email,created,status,reason\n" +
		"kim@example.com,2025-11-27 00:00:00,5.1.1,550 5.1.1 The email account that you tried to reach does not exist.\n" +
		"lee@example.com,2025-11-28 00:00:00,5.1.1,550 5.1.1 user unknown\n"
	want = strings.Replace(want, "kim@example.com", "Kim@Example.com", 1)
	if code != 200 || body != want || h.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Errorf("export: %d %q %q\nwant %q", code, h.Get("Content-Type"), body, want)
	}
	// The CLI writes the same file.
	var out, errOut syncBuffer
	if err := run(context.Background(), []string{"bouncer", "suppressions", "export", "--list", "bounces", "--account", "acme"}, envFunc(f.env), strings.NewReader(""), &out, &errOut); err != nil || out.String() != body {
		t.Errorf("the CLI's export differs: %v\n%q\n%q", err, out.String(), body)
	}
}

// TestAPIHostileFiltersOnClickHouse: SQL metacharacters and LIKE wildcards
// in the email filter, on the real store: a correct answer (only SendGrid's
// % is a wildcard), and the lists unchanged.
func TestAPIHostileFiltersOnClickHouse(t *testing.T) {
	f := newAPIFixture(t)
	t0 := f.clock().Add(-time.Hour)
	for _, e := range []string{"a_b@x.org", "axb@x.org", `back\slash@x.org`, "o'brien@x.org"} {
		f.addEntry(t, "acme", "bounces", e, t0)
	}
	for q, want := range map[string][]string{
		"%27%20OR%201%3D1%20--":                         {},
		"x%27%29%3B%20DROP%20TABLE%20suppressions%3B--": {},
		"a_":                  {"a_b@x.org"},
		"_":                   {},
		"%25_b":               {"a_b@x.org"},
		"%5C":                 {},
		"back%5C":             {`back\slash@x.org`},
		"o%27":                {"o'brien@x.org"},
		"%25%40x.org":         {"a_b@x.org", "axb@x.org", `back\slash@x.org`, "o'brien@x.org"},
		"%22%3B%60":           {},
		"%E2%80%AEgro.x%40b_": {},
	} {
		got := f.emails(t, f.keyA, "/v3/suppression/bounces?email="+q)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("email=%s: %v, want %v", q, got, want)
		}
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); len(got) != 4 {
		t.Errorf("the list after the filters: %v", got)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
	if err != nil || fmt.Sprint(got) != "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32]" {
		t.Errorf("parsePrefixes: %v %v", got, err)
	}
	if _, err := parsePrefixes("10.0.0.0/8,proxy.internal"); err == nil || !strings.Contains(err.Error(), "write e.g.") {
		t.Errorf("a name: %v, want an error saying how to write it", err)
	}
}
