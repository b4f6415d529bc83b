package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// Hostile input, table-driven over the route table: oversize bodies, bad
// JSON, bad addresses, huge limits and offsets, path tricks, SQL
// metacharacters and LIKE wildcards. Every answer is a 4xx in SendGrid's
// error shape (or the correct, empty 200 where SendGrid answers that), the
// server never answers 5xx, and nothing reaches the stores' write methods.

// hostileServer has every store of this package's areas, each recording
// writes.
func hostileServer(t *testing.T) (http.Handler, string, *fakeStore, *fakePrivacy, *statsStore) {
	t.Helper()
	token, k := testKey(t, "acme", false)
	st := &statsStore{}
	p := newFakePrivacy()
	h := NewServer(Config{Store: st, Stats: st, Activity: &fakeActivity{}, Checker: fakeChecker{}, Privacy: p, Keys: fakeKeys{k},
		Groups: hostileGroups, BouncePurge: hostilePurge, RateLimit: 1e6, MaxBodyBytes: 1024})
	return h, token, &st.fakeStore, p, st
}

// hostileGroups is the hostile server's group store: group 7 is implicit
// (it has an unsubscribe), so its routes reach their checks.
var hostileGroups = func() *fakeGroups {
	g := newFakeGroups()
	g.members[7] = []string{"a@x.org"}
	return g
}()

// hostilePurge is the hostile server's bounce purge store.
var hostilePurge = &fakePurge{}

// jsonBodyRoutes are the routes of this package's areas that read a JSON
// body.
var jsonBodyRoutes = map[string]bool{
	"POST /v3/asm/suppressions/global":                   true,
	"POST /v3/asm/groups/{group_id}/suppressions":        true,
	"POST /v3/asm/groups":                                true,
	"PATCH /v3/asm/groups/{group_id}":                    true,
	"PATCH /v3/mail_settings/bounce_purge":               true,
	"POST /v3/asm/groups/{group_id}/suppressions/search": true,
	"POST /bouncer/v1/suppressions/check":                true,
	"POST /bouncer/v1/privacy/erasures":                  true,
	"DELETE /v3/suppression/bounces":                     true,
	"DELETE /v3/suppression/blocks":                      true,
	"DELETE /v3/suppression/invalid_emails":              true,
	"DELETE /v3/suppression/spam_reports":                true,
	"PATCH /v3/mail_settings/forward_bounce":             true,
	"POST /v3/user/webhooks/event/settings":              true,
	"PATCH /v3/user/webhooks/event/settings/{id}":        true,
	"POST /v3/user/webhooks/event/test":                  true,
	"POST /bouncer/v1/webhooks/{id}/replay":              true,
	"PATCH /v3/user/webhooks/event/settings/signed/{id}": true,
	"POST /v3/user/webhooks/security/policies":           true,
	"PATCH /v3/user/webhooks/security/policies/{id}":     true,
}

var badJSON = []string{
	``, `{`, `{"emails":`, `[]`, `"x"`, `null`, `{"emails":"a@x.org"}`, `{"emails":[1,2]}`, `{"recipient_emails":{"a":1}}`,
	`{"email":["a@x.org"]}`, `{"emails":["a@x.org"]} trailing`, "{\"emails\":[\"\xff\xfe@x.org\"]}", `{"emails":["a@x.org"],}`,
	strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
}

var badPathEmails = []string{
	"not-an-email", "a%20b%40x.org", "%00%40x.org", "a%00b%40x.org", "a%40", "%40x.org", "%40", strings.Repeat("a", 400) + "%40",
	"a%2540x.org", "%C0%AE%C0%AE%40x.org", "a%0Ab%40x.org", "..%2F..%2Fapi_keys", "%2E%2E", "a%09b%40x.org", "%FF%40x.org",
}

// pathTricks rewrite a route's path (with its parameters filled in).
var pathTricks = []struct {
	name string
	fn   func(p string) string
}{
	{"dot-dot segment", func(p string) string { return p + "/../../../etc/passwd" }},
	{"encoded dot-dot", func(p string) string { return p + "/%2e%2e/%2e%2e/api_keys" }},
	{"double-encoded dot-dot", func(p string) string { return p + "/%252e%252e/%252e%252e" }},
	{"encoded slash", func(p string) string { i := strings.Index(p[1:], "/") + 1; return p[:i] + "%2F" + p[i+1:] }},
	{"NUL", func(p string) string { return p + "%00" }},
	// (A backslash inside the last segment is part of the parameter: an
	// address may hold one, and such an address can be named.)
	{"backslash", func(p string) string { return p + `/%5C..%5C` }},
}

// fill puts harmless values into a route's path parameters.
func fill(path string) string {
	r := strings.NewReplacer("{email}", "a%40x.org", "{group_id}", "7", "{classification}", "Content", "{msg_id}", "m1",
		"{list}", "bounces", "{id}", "00000000-0000-0000-0000-000000000000", "{webhook_id}", "00000000-0000-0000-0000-000000000000", "{file}", "x.js",
		"{download_uuid}", "00000000-0000-0000-0000-000000000000", "{client_type}", "phone")
	return r.Replace(path)
}

// ownPaths are the paths of core.json and privacy.json: the answers of
// those routes are validated against the document here; other areas
// validate theirs in their own tests.
var ownPaths = func() map[string]bool {
	own := map[string]bool{}
	for _, name := range []string{"openapi/core.json", "openapi/privacy.json", "openapi/groups.json", "openapi/purge.json"} {
		var doc struct {
			Paths map[string]any `json:"paths"`
		}
		if err := readJSON(openAPIFiles, name, &doc); err != nil {
			panic(err)
		}
		for p := range doc.Paths {
			own[p] = true
		}
	}
	return own
}()

// hostileDo serves req, validating the answer against the document when
// the route is one of ours.
func hostileDo(t *testing.T, h http.Handler, routePath string, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	if ownPaths[routePath] {
		return doRequest(t, h, req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func hostileReq(method, path, token, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// checkHostile requires a 4xx in SendGrid's shape, or, when okEmpty, a 200
// with an empty list.
func checkHostile(t *testing.T, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	if rec.Code < 400 || rec.Code > 499 {
		t.Errorf("%s: %d %.200s, want a 4xx", what, rec.Code, rec.Body)
		return
	}
	errorMessage(t, rec, what)
}

// errorMessage requires the error shape of the API a request path belongs
// to (v2's under /api/, SendGrid's v3 elsewhere; what starts with or holds
// the path) and returns its message.
func errorMessage(t *testing.T, rec *httptest.ResponseRecorder, what string) string {
	t.Helper()
	if u, err := url.PathUnescape(what); err == nil {
		what = u // (an encoded slash: the server decides on the decoded path)
	}
	if strings.Contains(what, legacyPrefix) && !strings.Contains(what, "/v3/") && !strings.Contains(what, "/bouncer/") {
		return legacyErrorOf(t, rec)
	}
	_, msg := sendGridError(t, rec)
	return msg
}

func TestHostileInput(t *testing.T) {
	h, token, store, privacy, _ := hostileServer(t)
	for _, rt := range (&server{}).routes() {
		if !rt.auth {
			continue
		}
		id := rt.method + " " + rt.path
		path := fill(rt.path)
		t.Run(id, func(t *testing.T) {
			// A body over the limit: 413 before the handler runs.
			rec := hostileDo(t, h, rt.path, hostileReq(rt.method, path, token, strings.Repeat("x", 2000)))
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("2000-byte body (limit 1024): %d %.200s, want 413", rec.Code, rec.Body)
			} else {
				errorMessage(t, rec, rt.path)
			}
			if jsonBodyRoutes[id] {
				// A body that does not say its size (chunked) and is over
				// the limit: 413 when it is read.
				req := hostileReq(rt.method, path, token, `{"emails":["`+strings.Repeat("a", 2000)+`@x.org"]}`)
				req.ContentLength = -1
				if rec := hostileDo(t, h, rt.path, req); rec.Code != http.StatusRequestEntityTooLarge && rec.Code != 404 && rec.Code != 503 {
					t.Errorf("chunked body over the limit: %d %.200s, want 413", rec.Code, rec.Body)
				}
				for _, b := range badJSON {
					checkHostile(t, hostileDo(t, h, rt.path, hostileReq(rt.method, path, token, b)), path+" body "+b[:min(len(b), 40)])
				}
			}
			if strings.Contains(rt.path, "{email}") {
				for _, e := range badPathEmails {
					p := strings.Replace(fill(strings.Replace(rt.path, "{email}", "EMAIL", 1)), "EMAIL", e, 1)
					checkHostile(t, hostileDo(t, h, rt.path, hostileReq(rt.method, p, token, "")), p+" address "+e[:min(len(e), 40)])
				}
			}
			for _, tr := range pathTricks {
				p := tr.fn(path)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hostileReq(rt.method, p, token, ""))
				// A path with dot segments or doubled slashes is not
				// redirected to the route it cleans to: it gets a 404.
				checkHostile(t, rec, tr.name+" "+p)
			}
		})
	}
	if hostilePurge.writes > 0 {
		t.Errorf("hostile requests wrote %d bounce purge settings", hostilePurge.writes)
	}
	if hostileGroups.writes > 0 {
		t.Errorf("hostile requests wrote %d group changes", hostileGroups.writes)
	}
	if len(store.changes) > 0 || len(privacy.erased) > 0 || len(privacy.lists) > 0 {
		t.Errorf("hostile requests changed the stores: %d changes, erased %v, imported %v", len(store.changes), privacy.erased, privacy.lists)
	}
}

// TestHostileQueryParameters: limits and offsets beyond every integer type,
// negative, fractional or not numbers at all; dates and times out of range.
func TestHostileQueryParameters(t *testing.T) {
	h, token, store, _, _ := hostileServer(t)
	huge := []string{"18446744073709551616", "99999999999999999999999999999999", "-1", "-9223372036854775809", "1e3", "1.5", "0x10", "%20", "NaN", "++1"}
	for _, c := range []struct {
		path, param string
		extra       []string
	}{
		{"/v3/suppression/bounces?", "limit", []string{"0", "501"}},
		{"/v3/suppression/bounces?", "offset", []string{"2147483648", "9223372036854775808"}},
		{"/v3/suppression/spam_reports?", "start_time", []string{"4294967296"}},
		{"/v3/suppression/blocks?", "end_time", []string{"4294967296"}},
		{"/bouncer/v1/privacy/erasures?", "limit", []string{"0", "501"}},
		{"/bouncer/v1/privacy/erasures?", "offset", []string{"2147483648"}},
		{"/bouncer/v1/suppressions/unsubscribes/export?", "group_id", []string{"0", "9223372036854775808"}},
		{"/v3/messages?query=msg_id%3D%22a%22&", "limit", []string{"0", "1001"}},
		{"/v3/stats?start_date=2026-11-01&", "limit", nil},
		{"/v3/stats?start_date=2026-11-01&", "offset", nil},
		{"/v3/stats?", "start_date", []string{"2026-13-01", "99999-01-01", "2026-11-01T00:00:00Z"}},
		{"/v3/suppression/bounces/classifications?", "start_date", []string{"2026-02-30", "0000-00-00"}},
	} {
		for _, v := range append(huge, c.extra...) {
			path := c.path + c.param + "=" + v
			rec := do(t, h, "GET", path, token, "")
			checkHostile(t, rec, path)
			if f, _ := sendGridError(t, rec); rec.Code == 400 && (f == nil || *f != c.param) {
				t.Errorf("%s: field %v, want %s", path, f, c.param)
			}
		}
	}
	if len(store.changes) > 0 {
		t.Errorf("changes: %+v", store.changes)
	}
}

// TestHostileEmailFilter: SQL metacharacters and LIKE wildcards in the list
// filter reach the store as a LIKE pattern where only SendGrid's % is a
// wildcard; the answer is a correct (here: empty) 200.
func TestHostileEmailFilter(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &recordingStore{}
	h := NewServer(Config{Store: st, Keys: fakeKeys{k}, RateLimit: 1e6})
	for raw, want := range map[string]string{
		"%27%20OR%201%3D1%20--": `' or 1=1 --%`,
		"a_b":                   `a\_b%`,
		"%5C":                   `\\%`,
		"%5C%25":                `\\%%`,
		"%25":                   `%%`,
		"x%27%29%3B%20DROP%20TABLE%20suppressions%3B--": `x'); drop table suppressions;--%`,
		"%22%3B%60": "\";`%",
	} {
		rec := do(t, h, "GET", "/v3/suppression/bounces?email="+raw, token, "")
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
			t.Errorf("email=%s: %d %s, want 200 []", raw, rec.Code, rec.Body)
		}
		if st.last.EmailLike != want {
			t.Errorf("email=%s: store got LIKE %q, want %q", raw, st.last.EmailLike, want)
		}
	}
	for _, raw := range []string{"%FF", "%EF%BF%BD", "a%00", "a%0Ab", strings.Repeat("a", 400)} {
		checkHostile(t, do(t, h, "GET", "/v3/suppression/bounces?email="+raw, token, ""), "email="+raw)
	}
}

// recordingStore remembers the last list query.
type recordingStore struct {
	fakeStore
	last suppression.Query
}

func (r *recordingStore) Suppressions(ctx context.Context, account string, q suppression.Query) ([]suppression.Entry, error) {
	r.last = q
	return nil, nil
}

// statsRoutes are the GET routes of the table whose operation takes
// start_date, with the names parameters each declares.
func statsRoutes(t *testing.T) map[string][]string {
	t.Helper()
	type operation struct {
		Parameters []struct{ Name, In string } `json:"parameters"`
	}
	var doc struct {
		Paths map[string]struct {
			Get *operation `json:"get"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, rt := range (&server{}).routes() {
		op := doc.Paths[rt.path].Get
		if rt.method != "GET" || op == nil || strings.HasPrefix(rt.path, legacyPrefix) {
			continue // (the v2 bounce list takes start_date but is not a statistic)
		}
		var names []string
		dated := false
		for _, p := range op.Parameters {
			switch p.Name {
			case "start_date":
				dated = true
			case "categories", "mailbox_providers", "domains", "browsers":
				names = append(names, p.Name)
			}
		}
		if dated {
			out[rt.path] = names
		}
	}
	if len(out) < 8 {
		t.Fatalf("found %d routes with start_date, want the 8 statistics routes at least: %v", len(out), out)
	}
	return out
}

// TestHostileStatsRanges, over every route of the table that takes
// start_date: the widest range with ten names of each kind is a 400 in
// SendGrid's shape or an answer of bounded size, and while the server's
// statistics places are all taken the route answers 503 with Retry-After
// instead of running another query (issue 16, item 3).
func TestHostileStatsRanges(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{}
	s := NewServer(Config{Store: st, Stats: st, Dashboard: &fakeDashboard{}, Keys: fakeKeys{k}, RateLimit: 1e6, GeoIP: true}).(*server)
	for path, names := range statsRoutes(t) {
		q := "?start_date=1970-01-01&end_date=2106-02-06"
		for _, n := range names {
			for i := range 10 {
				q += fmt.Sprintf("&%s=n%d", n, i)
			}
		}
		p := fill(path) + q
		rec := do(t, s, "GET", p, token, "")
		switch {
		case rec.Code == 400:
			sendGridError(t, rec)
		case rec.Code != 200:
			t.Errorf("%s: %d %.200s", p, rec.Code, rec.Body)
		case rec.Body.Len() > 4<<20:
			t.Errorf("%s: a %d-byte answer", p, rec.Body.Len())
		}
	}
	s.queries = newQueryGate(1, 1, 10*time.Millisecond)
	leave, err := s.queries.enter(context.Background(), "someone else")
	if err != nil {
		t.Fatal(err)
	}
	defer leave()
	for path, names := range statsRoutes(t) {
		p := fill(path) + "?start_date=2026-01-01&end_date=2026-01-02"
		for _, n := range names {
			p += "&" + n + "=x"
		}
		rec := do(t, s, "GET", p, token, "")
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s while every statistics place is taken: %d %.200s, want 503 with Retry-After", p, rec.Code, rec.Body)
		} else {
			sendGridError(t, rec)
		}
	}
}
