package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
	"github.com/bouncer-mail/bouncer/suppression/liststest"
)

// memList keeps lists in memory as the ClickHouse store does (the
// conformance suite suppression/liststest holds it to that: see
// TestMemListConformance): per address the newest change wins, reads
// honour the query's list, group, bounds, kind, address pattern and
// paging, delete-all removes a whole list. It also keeps every change
// written (changes) and counts delete-alls, for the tests to check what
// the API wrote. The zero memList is empty and ready to use.
type memList struct {
	mu        sync.Mutex
	latest    map[memKey]suppression.Change // the newest change of each entry
	changes   []suppression.Change          // every change WriteSuppressions was given, in order
	deleteAll int
}

type memKey struct {
	account, list string
	group         int64
	email         string
}

// newFakeStore returns a store whose acme bounces list holds es, so the v2
// calls can be checked for what they select and remove.
func newFakeStore(es ...suppression.Entry) *fakeStore {
	f := &fakeStore{}
	f.seed("acme", suppression.ListBounces, 0, es...)
	return f
}

// seed puts es on account's list (not counted as changes written).
func (m *memList) seed(account, list string, group int64, es ...suppression.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		m.put(suppression.Change{AccountID: account, List: list, GroupID: group, Email: e.Email, EmailNorm: e.EmailNorm, At: e.Created,
			Reason: e.Reason, Status: e.Status, Classification: e.Classification, ReasonCode: e.ReasonCode})
	}
}

// put keeps c if it is newer than what the entry has.
func (m *memList) put(c suppression.Change) {
	if m.latest == nil {
		m.latest = map[memKey]suppression.Change{}
	}
	k := memKey{c.AccountID, c.List, c.GroupID, c.EmailNorm}
	if old, ok := m.latest[k]; !ok || c.Version() > old.Version() {
		m.latest[k] = c
	}
}

func (m *memList) match(account string, q suppression.Query) []suppression.Entry {
	var like *regexp.Regexp
	if q.EmailLike != "" {
		like = likePattern(q.EmailLike)
	}
	var out []suppression.Entry
	for k, c := range m.latest {
		if k.account != account || k.list != q.List || k.group != q.GroupID || c.Deleted {
			continue
		}
		e := suppression.Entry{Email: c.Email, EmailNorm: c.EmailNorm, Created: c.At, Reason: c.Reason, Status: c.Status,
			Classification: c.Classification, ReasonCode: c.ReasonCode}
		created := uint32(e.Created.Unix())
		soft := strings.HasPrefix(e.Status, "4")
		switch {
		case created < q.From, q.To != 0 && created > q.To:
		case q.Bounce == "soft" && !soft, q.Bounce == "hard" && soft:
		case like != nil && !like.MatchString(e.EmailNorm):
		default:
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].EmailNorm < out[j].EmailNorm
	})
	return out
}

// likePattern is a LIKE pattern (% any run, _ one character, \ escapes)
// as a regular expression.
func likePattern(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		case c == '%':
			b.WriteString("(?s:.*)")
		case c == '_':
			b.WriteString("(?s:.)")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func (m *memList) Suppressions(ctx context.Context, account string, q suppression.Query) ([]suppression.Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if q.Limit == 0 {
		q.Limit = 500
	}
	es := m.match(account, q)
	es = es[min(int(q.Offset), len(es)):]
	return es[:min(int(q.Limit), len(es))], nil
}

func (m *memList) CountSuppressions(ctx context.Context, account string, q suppression.Query) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(len(m.match(account, q))), nil
}

func (m *memList) WriteSuppressions(ctx context.Context, account string, cs []suppression.Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.changes = append(m.changes, cs...)
	for _, c := range cs {
		c.AccountID = account
		m.put(c)
	}
	return nil
}

func (m *memList) DeleteAllSuppressions(ctx context.Context, account, list string, group int64, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deleteAll++
	for k, c := range m.latest {
		if k.account == account && k.list == list && k.group == group && !c.Deleted {
			// Dated at at, or at the entry's own time when that is later,
			// so the removal wins (as the ClickHouse store stamps it).
			stamp := at
			if c.At.After(at) {
				stamp = c.At
			}
			m.put(suppression.Change{AccountID: account, List: list, GroupID: group, Email: c.Email, EmailNorm: c.EmailNorm,
				At: stamp, Deleted: true, Source: suppression.SourceAPI})
		}
	}
	return nil
}

// emails lists the current entries' addresses, sorted.
func (m *memList) emails() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, c := range m.latest {
		if !c.Deleted {
			out = append(out, c.EmailNorm)
		}
	}
	slices.Sort(out)
	return out
}

// TestMemListConformance: the in-memory list store of these tests (the
// list methods of fakeStore, the store of every API unit test) keeps the
// contract the ClickHouse store keeps (suppression/liststest; the
// suppression package runs the same suite on ClickHouse).
func TestMemListConformance(t *testing.T) {
	liststest.Run(t, func(*testing.T) liststest.Store { return newFakeStore() })
}

// legacyEntries: three hard bounces on three days and one soft one
// (imported from a SendGrid export).
func legacyEntries() []suppression.Entry {
	day := func(d int) time.Time { return time.Date(2025, 11, d, 10, 30, 0, 0, time.UTC) }
	return []suppression.Entry{
		{Email: "ann@x.org", EmailNorm: "ann@x.org", Created: day(25), Reason: "550 5.1.1 no such user", Status: "5.1.1"},
		{Email: "Bob@x.org", EmailNorm: "bob@x.org", Created: day(26), Reason: "550 5.1.1 no such user", Status: "5.1.1"},
		{Email: "cat@x.org", EmailNorm: "cat@x.org", Created: day(27), Reason: "550 5.1.2 no such domain", Status: "5.1.2"},
		{Email: "dan@x.org", EmailNorm: "dan@x.org", Created: day(27), Reason: "452 4.2.2 mailbox full", Status: "4.2.2"},
	}
}

// legacyError decodes v2's error shape and returns its first message.
func legacyErrorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body legacyError
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Message != "error" || len(body.Errors) != 1 || body.Errors[0] == "" {
		t.Fatalf("status %d body %q: not v2's error shape (%v)", rec.Code, rec.Body, err)
	}
	return body.Errors[0]
}

func TestLegacyBouncesGetAndCount(t *testing.T) {
	token, k := testKey(t, "acme", false)
	m := newFakeStore(legacyEntries()...)
	now := time.Date(2025, 11, 27, 18, 0, 0, 0, time.UTC)
	h := NewServer(Config{Store: m, Keys: fakeKeys{k}, Now: func() time.Time { return now }, RateLimit: 1e6})
	auth := "api_user=apikey&api_key=" + url.QueryEscape(token)
	get := func(query string) []legacyBounce {
		t.Helper()
		rec := do(t, h, "GET", "/api/bounces.get.json?"+auth+"&"+query, "", "")
		if rec.Code != 200 {
			t.Fatalf("get %s: %d %s", query, rec.Code, rec.Body)
		}
		var out []legacyBounce
		dec := json.NewDecoder(rec.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("get %s: %v", query, err)
		}
		return out
	}
	emails := func(bs []legacyBounce) string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Email)
		}
		return strings.Join(out, " ")
	}
	if got := get("date=1"); emails(got) != "cat@x.org dan@x.org Bob@x.org ann@x.org" || got[0].Created != "2025-11-27 10:30:00" ||
		got[0].Status != "5.1.2" || got[0].Reason != "550 5.1.2 no such domain" {
		t.Errorf("everything with dates: %+v", got)
	}
	if rec := do(t, h, "GET", "/api/bounces.get.json?"+auth, "", ""); strings.Contains(rec.Body.String(), "created") {
		t.Errorf("without date=1 the entries have no created: %s", rec.Body)
	}
	for query, want := range map[string]string{
		"limit=2":          "cat@x.org dan@x.org",
		"limit=2&offset=1": "dan@x.org Bob@x.org",
		"offset=3":         "ann@x.org",
		"days=1":           "cat@x.org dan@x.org",
		"days=2":           "cat@x.org dan@x.org Bob@x.org",
		"start_date=2025-11-25&end_date=2025-11-26": "Bob@x.org ann@x.org",
		"start_date=2025-11-26&end_date=2025-11-26": "Bob@x.org",
		"type=soft":        "dan@x.org",
		"type=hard&days=1": "cat@x.org",
		"email=BOB@x.org":  "Bob@x.org",
		"email=zed@x.org":  "",
		"start_date=2025-11-20&end_date=2025-11-24":           "",
		"type=soft&start_date=2025-11-20&end_date=2025-11-26": "",
	} {
		if got := emails(get(query)); got != want {
			t.Errorf("get %s: %q, want %q", query, got, want)
		}
	}
	// POST with a form body, and a Bearer key.
	req := httptest.NewRequest("POST", "/api/bounces.count.json", strings.NewReader(auth+"&type=hard"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := doRequest(t, h, req); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"count":3}` {
		t.Errorf("POST count type=hard: %d %s", rec.Code, rec.Body)
	}
	req = httptest.NewRequest("POST", "/api/bounces.get.json", strings.NewReader("days=1&limit=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+token)
	if rec := doRequest(t, h, req); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"email":"cat@x.org"`) || strings.Count(rec.Body.String(), "email") != 1 {
		t.Errorf("POST get with Bearer: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/api/bounces.count.json?start_date=2025-11-26", token, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"count":3}` {
		t.Errorf("GET count: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "POST", "/api/bounces.count.json", token, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"count":4}` {
		t.Errorf("POST count without a body: %d %s", rec.Code, rec.Body)
	}
}

func TestLegacyBouncesDelete(t *testing.T) {
	token, k := testKey(t, "acme", false)
	now := time.Date(2025, 11, 27, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		query, left string
		all         bool
	}{
		{"email=bob@x.org", "ann@x.org cat@x.org dan@x.org", false},
		{"email=zed@x.org", "ann@x.org bob@x.org cat@x.org dan@x.org", false},
		{"type=soft", "ann@x.org bob@x.org cat@x.org", false},
		{"type=hard", "dan@x.org", false},
		{"start_date=2025-11-26&end_date=2025-11-26", "ann@x.org cat@x.org dan@x.org", false},
		{"days=1&type=hard", "ann@x.org bob@x.org dan@x.org", false},
		{"email=dan@x.org&type=hard", "ann@x.org bob@x.org cat@x.org dan@x.org", false},
		{"", "", true},
	} {
		m := newFakeStore(legacyEntries()...)
		h := NewServer(Config{Store: m, Keys: fakeKeys{k}, Now: func() time.Time { return now }, RateLimit: 1e6})
		rec := do(t, h, "GET", "/api/bounces.delete.json?api_user=apikey&api_key="+url.QueryEscape(token)+"&"+tc.query, "", "")
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"message":"success"}` {
			t.Errorf("delete %q: %d %s", tc.query, rec.Code, rec.Body)
		}
		if got := strings.Join(m.emails(), " "); got != tc.left {
			t.Errorf("delete %q left %q, want %q", tc.query, got, tc.left)
		}
		if (m.deleteAll > 0) != tc.all {
			t.Errorf("delete %q: delete-all called %d times", tc.query, m.deleteAll)
		}
	}
	// POST, the parameters in a form body.
	m := newFakeStore(legacyEntries()...)
	h := NewServer(Config{Store: m, Keys: fakeKeys{k}, Now: func() time.Time { return now }, RateLimit: 1e6})
	req := httptest.NewRequest("POST", "/api/bounces.delete.json", strings.NewReader("api_user=apikey&api_key="+url.QueryEscape(token)+"&email=ann%40x.org"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if rec := doRequest(t, h, req); rec.Code != 200 || strings.Join(m.emails(), " ") != "bob@x.org cat@x.org dan@x.org" {
		t.Errorf("POST delete: %d %s, left %v", rec.Code, rec.Body, m.emails())
	}
}

func TestLegacyErrors(t *testing.T) {
	token, k := testKey(t, "acme", false)
	readOnly, kr := testKey(t, "acme", false, "suppression.read")
	h := NewServer(Config{Store: newFakeStore(legacyEntries()...), Keys: fakeKeys{k, kr}, RateLimit: 1e6, MaxBodyBytes: 200})
	auth := "api_user=apikey&api_key=" + url.QueryEscape(token)
	for _, tc := range []struct {
		name, method, path string
		status             int
		msg                string
	}{
		{"no key", "GET", "/api/bounces.get.json", 401, "api_user=apikey"},
		{"a username", "GET", "/api/bounces.get.json?api_user=me@x.org&api_key=secret", 401, "API keys only"},
		{"a wrong key", "GET", "/api/bounces.get.json?api_user=apikey&api_key=SG.nope.nope", 401, "invalid"},
		{"bad type", "GET", "/api/bounces.get.json?" + auth + "&type=blocked", 400, "hard or soft"},
		{"days and dates", "GET", "/api/bounces.count.json?" + auth + "&days=2&start_date=2025-11-01", 400, "not both"},
		{"bad date", "GET", "/api/bounces.get.json?" + auth + "&start_date=11/01/2025", 400, "YYYY-MM-DD"},
		{"end before start", "GET", "/api/bounces.get.json?" + auth + "&start_date=2025-11-02&end_date=2025-11-01", 400, "end_date"},
		{"days 0", "GET", "/api/bounces.get.json?" + auth + "&days=0", 400, "days"},
		{"limit 0", "GET", "/api/bounces.get.json?" + auth + "&limit=0", 400, "limit"},
		{"date 2", "GET", "/api/bounces.get.json?" + auth + "&date=2", 400, "date"},
		{"bad email", "POST", "/api/bounces.delete.json?" + auth + "&email=nope", 400, "email"},
		{"read-only key deletes", "GET", "/api/bounces.delete.json?api_user=apikey&api_key=" + url.QueryEscape(readOnly), 403, "forbidden"},
		{"unknown call", "GET", "/api/bounces.add.json?" + auth, 404, "not found"},
		{"wrong method", "DELETE", "/api/bounces.get.json?" + auth, 405, "not allowed"},
	} {
		rec := do(t, h, tc.method, tc.path, "", "")
		if rec.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
			continue
		}
		if msg := legacyErrorOf(t, rec); !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: message %q, want it to say %q", tc.name, msg, tc.msg)
		}
	}
	// A form body over the limit, with the key inside it.
	req := httptest.NewRequest("POST", "/api/bounces.get.json", strings.NewReader(auth+"&email="+strings.Repeat("a", 300)+"%40x.org"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := doRequest(t, h, req)
	if rec.Code != 413 {
		t.Errorf("form over the limit: %d %s", rec.Code, rec.Body)
	} else {
		legacyErrorOf(t, rec)
	}
}
