package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// fakeGroups keeps groups in memory; members[group] are the group's
// current unsubscribes (normalised addresses). It records deletes, and
// counts writes so hostile tests can see none happened.
type fakeGroups struct {
	mu      sync.Mutex
	groups  map[int64]suppression.Group // created ones
	deleted map[int64]bool
	members map[int64][]string
	writes  int
}

func newFakeGroups() *fakeGroups {
	return &fakeGroups{groups: map[int64]suppression.Group{}, deleted: map[int64]bool{}, members: map[int64][]string{}}
}

func (f *fakeGroups) Groups(ctx context.Context, account string) ([]suppression.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []suppression.Group
	seen := map[int64]bool{}
	for id := int64(1); id < 1000; id++ {
		g, ok := f.groups[id]
		if ok && !f.deleted[id] {
			g.Unsubscribes = uint64(len(f.members[id]))
			out, seen[id] = append(out, g), true
		} else if len(f.members[id]) > 0 {
			out = append(out, suppression.Group{ID: id, Unsubscribes: uint64(len(f.members[id])), Implicit: true})
		}
	}
	return out, nil
}

func (f *fakeGroups) CreateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) (suppression.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if g.ID == 0 {
		g.ID = int64(len(f.groups)) + 100
	}
	g.Implicit, g.Unsubscribes = false, 0
	f.groups[g.ID] = g
	delete(f.deleted, g.ID)
	return g, nil
}

func (f *fakeGroups) UpdateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if _, ok := f.groups[g.ID]; !ok {
		return suppression.ErrNoGroup
	}
	g.Unsubscribes = 0
	f.groups[g.ID] = g
	return nil
}

func (f *fakeGroups) DeleteGroup(ctx context.Context, account string, id int64, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	f.deleted[id] = true
	delete(f.members, id)
	return nil
}

func (f *fakeGroups) GroupSuppressions(ctx context.Context, account, emailNorm string, offset, limit uint64) ([]suppression.GroupEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []suppression.GroupEntry
	for id := int64(1); id < 1000; id++ {
		for _, m := range f.members[id] {
			if emailNorm == "" || m == emailNorm {
				out = append(out, suppression.GroupEntry{GroupID: id, Entry: suppression.Entry{Email: m, EmailNorm: m, Created: time.Unix(1764201600, 0)}})
			}
		}
	}
	return out, nil
}

func (f *fakeGroups) GroupMembers(ctx context.Context, account string, group int64, norms []string) ([]suppression.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []suppression.Entry
	for _, m := range f.members[group] {
		for _, n := range norms {
			if m == n {
				out = append(out, suppression.Entry{Email: m, EmailNorm: m})
			}
		}
	}
	return out, nil
}

func TestUnsubscribeGroups(t *testing.T) {
	token, k := testKey(t, "acme", false)
	g := newFakeGroups()
	g.members[7] = []string{"ann@x.org", "bob@x.org"} // group 7 of SendGrid's, never created here
	h := NewServer(Config{Store: &fakeStore{}, Groups: g, Keys: fakeKeys{k}, RateLimit: 1e6})

	rec := do(t, h, "POST", "/v3/asm/groups", token, `{"name":"Newsletters","description":"Our monthly newsletter.","is_default":true}`)
	var created groupBody
	if rec.Code != 201 || json.Unmarshal(rec.Body.Bytes(), &created) != nil || created.ID == 0 || created.Name != "Newsletters" || !created.IsDefault {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "unsubscribes") {
		t.Errorf("create answers SendGrid's four fields, no count: %s", rec.Body)
	}
	rec = do(t, h, "GET", "/v3/asm/groups", token, "")
	want := fmt.Sprintf(`[{"id":7,"name":"","description":"","is_default":false,"unsubscribes":2},{"id":%d,"name":"Newsletters","description":"Our monthly newsletter.","is_default":true,"unsubscribes":0}]`, created.ID)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("list: %d %s\nwant %s", rec.Code, rec.Body, want)
	}
	if rec := do(t, h, "GET", "/v3/asm/groups?id=7", token, ""); rec.Code != 200 || strings.Count(rec.Body.String(), `"id"`) != 1 || !strings.Contains(rec.Body.String(), `"id":7`) {
		t.Errorf("list ?id=7: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/v3/asm/groups/7", token, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"unsubscribes":2`) {
		t.Errorf("get implicit 7: %d %s", rec.Code, rec.Body)
	}
	// Naming the implicit group creates it under its id.
	rec = do(t, h, "PATCH", "/v3/asm/groups/7", token, `{"name":"Weekly","description":"Weekly news."}`)
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), `"id":7,"name":"Weekly","description":"Weekly news.","is_default":false,"unsubscribes":2`) {
		t.Errorf("name group 7: %d %s", rec.Code, rec.Body)
	}
	if gg := g.groups[7]; gg.Name != "Weekly" || gg.Implicit {
		t.Errorf("group 7 stored as %+v", gg)
	}
	rec = do(t, h, "PATCH", "/v3/asm/groups/7", token, `{"is_default":true}`)
	if rec.Code != 201 || !strings.Contains(rec.Body.String(), `"name":"Weekly","description":"Weekly news.","is_default":true,"unsubscribes":2`) {
		t.Errorf("patch is_default: %d %s", rec.Code, rec.Body)
	}
	// Search, the account's group unsubscribes, one address's groups.
	rec = do(t, h, "POST", "/v3/asm/groups/7/suppressions/search", token, `{"recipient_emails":["ANN@x.org","zed@x.org"]}`)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `["ann@x.org"]` {
		t.Errorf("search: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "GET", "/v3/asm/suppressions", token, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `{"email":"ann@x.org","group_id":7,"group_name":"Weekly","created_at":1764201600}`) {
		t.Errorf("all group unsubscribes: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "GET", "/v3/asm/suppressions/bob@x.org", token, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"id":7,"is_default":true,"name":"Weekly","suppressed":true`) ||
		!strings.Contains(rec.Body.String(), fmt.Sprintf(`"id":%d,"is_default":true,"name":"Newsletters","suppressed":false`, created.ID)) {
		t.Errorf("bob's groups: %d %s", rec.Code, rec.Body)
	}
	// Delete: the group and its unsubscribes go.
	if rec := do(t, h, "DELETE", "/v3/asm/groups/7", token, ""); rec.Code != 204 || rec.Body.Len() != 0 {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
	if len(g.members[7]) != 0 || !g.deleted[7] {
		t.Errorf("after delete: members %v, deleted %v", g.members[7], g.deleted[7])
	}
	for _, path := range []string{"/v3/asm/groups/7", "/v3/asm/groups/999"} {
		if rec := do(t, h, "GET", path, token, ""); rec.Code != 404 {
			t.Errorf("GET %s: %d, want 404", path, rec.Code)
		} else if f, _ := sendGridError(t, rec); f == nil || *f != "group_id" {
			t.Errorf("GET %s: field %v", path, f)
		}
	}
	if rec := do(t, h, "DELETE", "/v3/asm/groups/999", token, ""); rec.Code != 404 {
		t.Errorf("delete unknown: %d", rec.Code)
	}
	if rec := do(t, h, "PATCH", "/v3/asm/groups/999", token, `{"name":"x"}`); rec.Code != 404 {
		t.Errorf("patch unknown: %d", rec.Code)
	}
}

func TestUnsubscribeGroupLimits(t *testing.T) {
	token, k := testKey(t, "acme", false)
	g := newFakeGroups()
	g.members[3] = []string{"ann@x.org"}
	h := NewServer(Config{Store: &fakeStore{}, Groups: g, Keys: fakeKeys{k}, RateLimit: 1e6})
	if rec := do(t, h, "POST", "/v3/asm/groups", token, `{"name":"News","description":"d"}`); rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		name, method, path, body, field string
	}{
		{"no name", "POST", "/v3/asm/groups", `{"description":"d"}`, "name"},
		{"no description", "POST", "/v3/asm/groups", `{"name":"n"}`, "description"},
		{"blank name", "POST", "/v3/asm/groups", `{"name":"  ","description":"d"}`, "name"},
		{"name of 31", "POST", "/v3/asm/groups", `{"name":"` + strings.Repeat("é", 31) + `","description":"d"}`, "name"},
		{"description of 101", "POST", "/v3/asm/groups", `{"name":"n","description":"` + strings.Repeat("d", 101) + `"}`, "description"},
		{"control character", "POST", "/v3/asm/groups", `{"name":"a\u0007b","description":"d"}`, "name"},
		{"name taken, other case", "POST", "/v3/asm/groups", `{"name":"NEWS","description":"d"}`, "name"},
		{"name of wrong type", "POST", "/v3/asm/groups", `{"name":5,"description":"d"}`, "name"},
		{"naming an implicit group needs a name", "PATCH", "/v3/asm/groups/3", `{"description":"d"}`, "name"},
		{"bad id", "GET", "/v3/asm/groups?id=x", "", "id"},
		{"bad group_id", "GET", "/v3/asm/groups/0", "", "group_id"},
		{"search without addresses", "POST", "/v3/asm/groups/3/suppressions/search", `{"recipient_emails":[]}`, "recipient_emails"},
		{"search of a bad address", "POST", "/v3/asm/groups/3/suppressions/search", `{"recipient_emails":["nope"]}`, "recipient_emails"},
		{"limit 501", "GET", "/v3/asm/suppressions?limit=501", "", "limit"},
	} {
		rec := do(t, h, tc.method, tc.path, token, tc.body)
		if rec.Code != 400 {
			t.Errorf("%s: %d %s, want 400", tc.name, rec.Code, rec.Body)
			continue
		}
		if f, _ := sendGridError(t, rec); f == nil || *f != tc.field {
			t.Errorf("%s: field %v, want %s", tc.name, f, tc.field)
		}
	}
	// 30 characters (not bytes) is fine.
	if rec := do(t, h, "POST", "/v3/asm/groups", token, `{"name":"`+strings.Repeat("é", 30)+`","description":""}`); rec.Code != 201 {
		t.Errorf("a 30-character name: %d %s", rec.Code, rec.Body)
	}
	// SendGrid's 200 groups; implicit ones do not count.
	for i := len(g.groups); i < suppression.MaxGroups; i++ {
		g.groups[int64(500+i)] = suppression.Group{ID: int64(500 + i), Name: fmt.Sprint("g", i)}
	}
	rec := do(t, h, "POST", "/v3/asm/groups", token, `{"name":"one more","description":"d"}`)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "at most 200") {
		t.Errorf("group 201: %d %s", rec.Code, rec.Body)
	}
	// Without a group store the routes say so.
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1e6})
	if rec := do(t, h, "GET", "/v3/asm/groups", token, ""); rec.Code != 404 || !strings.Contains(rec.Body.String(), "not available") {
		t.Errorf("no group store: %d %s", rec.Code, rec.Body)
	}
}
