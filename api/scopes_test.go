package api

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/suppression"
)

// groupChecker: ann@x.org is on acme's bounces and on group 7's
// unsubscribes.
type groupChecker struct{}

func (groupChecker) Lookup(account, email string) []suppression.Membership {
	if account != "acme" || email != "ann@x.org" {
		return nil
	}
	return []suppression.Membership{{List: "bounces", ReasonCode: "user_unknown"}, {List: "unsubscribes", Group: 7}}
}

func (groupChecker) DropReason(account, email string, group, at int64) string {
	switch {
	case account != "acme" || email != "ann@x.org":
		return ""
	case group == 7:
		return "Unsubscribed Address"
	}
	return "Bounced Address"
}

// TestGroupScopesOnEveryPath is the security review's finding 9: a key
// with suppression.read read group 7's unsubscribes through the CSV export
// (?group_id=7) and the batch check (group_id, and the group listings in
// "lists"), though GET /v3/asm/groups/7/suppressions needs
// asm.groups.suppressions.read. Every path to a group's unsubscribes now
// needs the group scope; a key holding every other scope of the route table
// learns nothing of them.
func TestGroupScopesOnEveryPath(t *testing.T) {
	var others []string
	for _, r := range Routes() {
		if r.Scope != "" && !strings.HasPrefix(r.Scope, "asm.groups.") && !slices.Contains(others, r.Scope) {
			others = append(others, r.Scope)
		}
	}
	noGroups, kNo := testKey(t, "acme", false, others...)
	all, kAll := testKey(t, "acme", false)
	p := newFakePrivacy()
	p.lists[listKey("acme", "unsubscribes", 7)] = []csvlist.Row{{Email: "ann@x.org", EmailNorm: "ann@x.org", Created: time.Unix(1764201600, 0)}}
	store := &fakeStore{}
	store.seed("acme", suppression.ListUnsubscribes, 7, suppression.Entry{Email: "ann@x.org", EmailNorm: "ann@x.org", Created: time.Unix(1764201600, 0)})
	h := NewServer(Config{Store: store, Keys: fakeKeys{kNo, kAll}, Checker: groupChecker{}, Privacy: p, RateLimit: 1e6})

	const csvBody = "email,created\nbob@x.org,1764201600\n"
	paths := []struct {
		method, path, body string
		// group says whether the answer holds group 7's data when the
		// key may see it.
		group func(rec *httptest.ResponseRecorder) bool
	}{
		{"GET", "/v3/asm/groups/7/suppressions", "", func(rec *httptest.ResponseRecorder) bool {
			return rec.Code == 200 && strings.Contains(rec.Body.String(), "ann@x.org")
		}},
		{"GET", "/bouncer/v1/suppressions/unsubscribes/export?group_id=7", "", func(rec *httptest.ResponseRecorder) bool {
			return rec.Code == 200 && strings.Contains(rec.Body.String(), "ann@x.org")
		}},
		{"GET", "/bouncer/v1/suppressions/global_unsubscribes/export?group_id=7", "", func(rec *httptest.ResponseRecorder) bool {
			return rec.Code == 200 && strings.Contains(rec.Body.String(), "ann@x.org")
		}},
		{"POST", "/bouncer/v1/suppressions/check", `{"emails":["ann@x.org"],"group_id":7}`, func(rec *httptest.ResponseRecorder) bool {
			return rec.Code == 200 && strings.Contains(rec.Body.String(), "Unsubscribed Address")
		}},
		{"POST", "/bouncer/v1/suppressions/check", `{"emails":["ann@x.org"]}`, func(rec *httptest.ResponseRecorder) bool {
			return strings.Contains(rec.Body.String(), `"group_id":7`)
		}},
	}
	for _, tc := range paths {
		rec := do(t, h, tc.method, tc.path, all, tc.body)
		if !tc.group(rec) {
			t.Errorf("%s %s with every scope: %d %s, want group 7's entry", tc.method, tc.path, rec.Code, rec.Body)
		}
		rec = do(t, h, tc.method, tc.path, noGroups, tc.body)
		if tc.group(rec) {
			t.Errorf("%s %s without %s shows group 7's entry: %d %s", tc.method, tc.path, scopeGroupRead, rec.Code, rec.Body)
		}
		if tc.body == `{"emails":["ann@x.org"]}` {
			// The other lists still answer.
			if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Bounced Address") || !strings.Contains(rec.Body.String(), `"list":"bounces"`) {
				t.Errorf("check without group_id: %d %s", rec.Code, rec.Body)
			}
		} else if rec.Code != 403 || !strings.Contains(rec.Body.String(), scopeGroupRead) && !strings.Contains(rec.Body.String(), "access forbidden") {
			t.Errorf("%s %s without the group scope: %d %s, want 403 naming the scope", tc.method, tc.path, rec.Code, rec.Body)
		}
	}

	// Writing a group's unsubscribes takes the group create scope on the
	// import too.
	for _, key := range []string{noGroups, all} {
		rec := do(t, h, "POST", "/bouncer/v1/suppressions/unsubscribes/import?group_id=7", key, csvBody)
		p.mu.Lock()
		imported := len(p.lists[listKey("acme", "unsubscribes", 7)]) > 1
		p.mu.Unlock()
		if key == noGroups && (rec.Code != 403 || imported || !strings.Contains(rec.Body.String(), scopeGroupCreate)) {
			t.Errorf("import into group 7 without %s: %d %s (imported %v)", scopeGroupCreate, rec.Code, rec.Body, imported)
		}
		if key == all && (rec.Code != 200 || !imported) {
			t.Errorf("import into group 7 with every scope: %d %s", rec.Code, rec.Body)
		}
	}
	// Without group_id the export is the global list's, readable with
	// suppression.read as SendGrid's /v3/suppression/unsubscribes is.
	if rec := do(t, h, "GET", "/bouncer/v1/suppressions/unsubscribes/export", noGroups, ""); rec.Code != 200 {
		t.Errorf("global export: %d %s", rec.Code, rec.Body)
	}
	// Adding global unsubscribes takes asm.suppressions.global.create, on
	// the import as on POST /v3/asm/suppressions/global; other lists do not.
	createOnly, kCreate := testKey(t, "acme", false, "suppression.create")
	withGlobal, kGlobal := testKey(t, "acme", false, "suppression.create", scopeGlobalCreate)
	h = NewServer(Config{Store: store, Keys: fakeKeys{kCreate, kGlobal}, Checker: groupChecker{}, Privacy: p, RateLimit: 1e6})
	for _, tc := range []struct {
		key, path string
		want      int
	}{
		{createOnly, "/bouncer/v1/suppressions/unsubscribes/import", 403},
		{createOnly, "/bouncer/v1/suppressions/global_unsubscribes/import", 403},
		{createOnly, "/bouncer/v1/suppressions/bounces/import", 200},
		{withGlobal, "/bouncer/v1/suppressions/unsubscribes/import", 200},
	} {
		body := csvBody
		if strings.Contains(tc.path, "bounces") {
			body = "email,created,reason,status\nbob@x.org,1764201600,550 no such user,5.1.1\n"
		}
		rec := do(t, h, "POST", tc.path, tc.key, body)
		if rec.Code != tc.want || tc.want == 403 && !strings.Contains(rec.Body.String(), scopeGlobalCreate) {
			t.Errorf("import %s: %d %s, want %d", tc.path, rec.Code, rec.Body, tc.want)
		}
	}

	// Every route that takes a group or reads a list's entries by
	// address is in the table above (or is a group route itself), so a new
	// path to the same data cannot be added without deciding its scope.
	covered := map[string]bool{}
	for _, tc := range paths {
		covered[tc.method+" "+strings.Split(tc.path, "?")[0]] = true
	}
	for _, r := range Routes() {
		takesGroup := strings.Contains(r.Path, "{group_id}") || strings.HasSuffix(r.Path, "/export") || strings.HasSuffix(r.Path, "/import") ||
			strings.HasSuffix(r.Path, "/check")
		if !takesGroup || strings.HasPrefix(r.Scope, "asm.groups.") || r.Path == "/bouncer/v1/suppressions/{list}/import" {
			continue
		}
		filled := strings.ReplaceAll(r.Path, "{list}", "unsubscribes")
		if !covered[r.Method+" "+filled] {
			t.Errorf("%s %s takes a group but is not in this test: decide which scope its group data needs", r.Method, r.Path)
		}
	}
}
