package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// recordingPublisher keeps what a Service announces on the change log.
type recordingPublisher struct {
	mu      sync.Mutex
	changes []suppression.Change
}

func (p *recordingPublisher) PublishChanges(ctx context.Context, cs []suppression.Change) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.changes = append(p.changes, cs...)
	return nil
}

// TestAPIUnsubscribeGroups: groups on real ClickHouse, through the API:
// ids after every id the account used, implicit groups from unsubscribes,
// naming one, concurrent creates, search, the account-wide listings, and a
// delete that takes the group's unsubscribes with it.
func TestAPIUnsubscribeGroups(t *testing.T) {
	f := newAPIFixture(t)
	call := func(method, path, body string, want int) string {
		t.Helper()
		code, got, _ := f.call(t, f.keyA, method, path, body)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
		}
		return got
	}
	// Events of SendGrid's group 42 (as a group_unsubscribe would write).
	call("POST", "/v3/asm/groups/42/suppressions", `{"recipient_emails":["ann@acme.org","bob@acme.org"]}`, 201)
	var g struct {
		ID           int64  `json:"id"`
		Name         string `json:"name"`
		Unsubscribes int    `json:"unsubscribes"`
	}
	if err := json.Unmarshal([]byte(call("POST", "/v3/asm/groups", `{"name":"Receipts","description":"Order receipts."}`, 201)), &g); err != nil || g.ID != 43 {
		t.Fatalf("first group: %+v %v, want id 43 (after the 42 the unsubscribes use)", g, err)
	}
	list := call("GET", "/v3/asm/groups", "", 200)
	want := `[{"id":42,"name":"","description":"","is_default":false,"unsubscribes":2},{"id":43,"name":"Receipts","description":"Order receipts.","is_default":false,"unsubscribes":0}]`
	if strings.TrimSpace(list) != want {
		t.Errorf("groups: %s\nwant %s", list, want)
	}
	call("PATCH", "/v3/asm/groups/42", `{"name":"Weekly news","description":"From SendGrid.","is_default":true}`, 201)
	if got := call("GET", "/v3/asm/groups/42", "", 200); !strings.Contains(got, `"name":"Weekly news","description":"From SendGrid.","is_default":true,"unsubscribes":2`) {
		t.Errorf("group 42 after naming it: %s", got)
	}
	call("PATCH", "/v3/asm/groups/42", `{"name":"receipts"}`, 400) // names are unique
	call("PATCH", "/v3/asm/groups/43", `{"description":"Receipts of orders."}`, 201)
	if got := call("GET", "/v3/asm/groups/43", "", 200); !strings.Contains(got, `"name":"Receipts","description":"Receipts of orders."`) {
		t.Errorf("group 43 after the patch: %s", got)
	}

	// Concurrent creates get distinct ids.
	var wg sync.WaitGroup
	ids := make([]int64, 6)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _ := f.call(t, f.keyA, "POST", "/v3/asm/groups", fmt.Sprintf(`{"name":"g%d","description":""}`, i))
			var c struct{ ID int64 }
			if code != 201 || json.Unmarshal([]byte(body), &c) != nil {
				t.Errorf("concurrent create %d: %d %s", i, code, body)
			}
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != 6 || ids[0] <= 43 {
		t.Errorf("concurrent creates got ids %v, want 6 distinct ids after 43", ids)
	}

	if got := call("POST", "/v3/asm/groups/42/suppressions/search", `{"recipient_emails":["ANN@acme.org","zed@acme.org"]}`, 200); strings.TrimSpace(got) != `["ann@acme.org"]` {
		t.Errorf("search: %s", got)
	}
	all := call("GET", "/v3/asm/suppressions", "", 200)
	if !strings.Contains(all, `"email":"ann@acme.org","group_id":42,"group_name":"Weekly news","created_at":1764201600`) || strings.Count(all, `"email"`) != 2 {
		t.Errorf("all group unsubscribes: %s", all)
	}
	one := call("GET", "/v3/asm/suppressions/bob@acme.org", "", 200)
	if !strings.Contains(one, `"id":42,"is_default":true,"name":"Weekly news","suppressed":true`) || !strings.Contains(one, `"id":43,"is_default":false,"name":"Receipts","suppressed":false`) {
		t.Errorf("bob's groups: %s", one)
	}

	// Delete: the unsubscribes go with the group; the id is not reused.
	call("DELETE", "/v3/asm/groups/42", "", 204)
	call("GET", "/v3/asm/groups/42", "", 404)
	if got := call("GET", "/v3/asm/groups/42/suppressions", "", 200); strings.TrimSpace(got) != "[]" {
		t.Errorf("group 42's unsubscribes after the delete: %s", got)
	}
	var next struct{ ID int64 }
	json.Unmarshal([]byte(call("POST", "/v3/asm/groups", `{"name":"after","description":""}`, 201)), &next)
	if next.ID <= ids[5] {
		t.Errorf("a group created after the delete got id %d, want above %d", next.ID, ids[5])
	}
	// A new unsubscribe with the deleted id: an implicit group again.
	call("POST", "/v3/asm/groups/42/suppressions", `{"recipient_emails":["cat@acme.org"]}`, 201)
	if got := call("GET", "/v3/asm/groups/42", "", 200); !strings.Contains(got, `"name":"","description":"","is_default":false,"unsubscribes":1`) {
		t.Errorf("group 42 used again after its delete: %s", got)
	}
	// Naming it again brings the group back under its id.
	call("PATCH", "/v3/asm/groups/42", `{"name":"Weekly again"}`, 201)
	if got := call("GET", "/v3/asm/groups/42", "", 200); !strings.Contains(got, `"name":"Weekly again"`) {
		t.Errorf("group 42 named again: %s", got)
	}
	// globex sees none of it.
	if code, body, _ := f.call(t, f.keyB, "GET", "/v3/asm/groups", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("globex's groups: %d %s", code, body)
	}
}

// TestDeleteGroupAnnouncesRemovals: with a change log, deleting a group
// writes and announces the removal of each of its unsubscribes.
func TestDeleteGroupAnnouncesRemovals(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	t0 := time.Unix(1764201600, 0)
	for _, e := range []string{"ann@acme.org", "bob@acme.org"} {
		if err := f.store.WriteSuppressions(ctx, []suppression.Change{{AccountID: "acme", List: "unsubscribes", GroupID: 9, Email: e, EmailNorm: e, At: t0}}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &recordingPublisher{}
	svc := suppression.NewService(f.store, pub, nil)
	if _, err := svc.CreateGroup(ctx, "acme", suppression.Group{ID: 9, Name: "nine"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := svc.DeleteGroup(ctx, "acme", 9, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range pub.changes {
		if c.AccountID == "acme" && c.List == "unsubscribes" && c.GroupID == 9 && c.Deleted && c.At.Equal(t0.Add(time.Hour)) {
			got = append(got, c.EmailNorm)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"ann@acme.org", "bob@acme.org"}) || len(pub.changes) != 2 {
		t.Errorf("announced %+v, want the removal of both unsubscribes of group 9", pub.changes)
	}
	gs, err := svc.Groups(ctx, "acme")
	if err != nil || len(gs) != 0 {
		t.Errorf("groups after the delete: %+v %v", gs, err)
	}
}

// Tenancy of the group routes: acme has a named group and group 7's
// unsubscribe (the victim's, from the common setup).
func init() {
	e := tenancyExercises
	e["POST /v3/asm/groups"] = tries(tenancyAttempt{"POST", "/v3/asm/groups", `{"name":"acme-secret-group","description":"{email}"}`})
	e["GET /v3/asm/groups"] = tries(tenancyAttempt{"GET", "/v3/asm/groups?id=7&id={id:group}", ""}, tenancyAttempt{"GET", "/v3/asm/groups?account_id=acme", ""})
	e["GET /v3/asm/groups/{group_id}"] = tries(tenancyAttempt{"GET", "/v3/asm/groups/7", ""}, tenancyAttempt{"GET", "/v3/asm/groups/{id:group}", ""})
	e["PATCH /v3/asm/groups/{group_id}"] = tries(tenancyAttempt{"PATCH", "/v3/asm/groups/{id:group}", `{"name":"stolen"}`}, tenancyAttempt{"PATCH", "/v3/asm/groups/7", `{"name":"stolen7"}`})
	e["DELETE /v3/asm/groups/{group_id}"] = tries(tenancyAttempt{"DELETE", "/v3/asm/groups/{id:group}", ""}, tenancyAttempt{"DELETE", "/v3/asm/groups/7", ""})
	e["POST /v3/asm/groups/{group_id}/suppressions/search"] = tries(tenancyAttempt{"POST", "/v3/asm/groups/7/suppressions/search", `{"recipient_emails":["{email}"]}`})
	e["GET /v3/asm/suppressions"] = tries(tenancyAttempt{"GET", "/v3/asm/suppressions?limit=500", ""})
	e["GET /v3/asm/suppressions/{email}"] = tries(tenancyAttempt{"GET", "/v3/asm/suppressions/{email}", ""})
	leaks = append(leaks, "acme-secret-group", "acme-group-description")
	tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		code, body, _ := f.call(t, f.keyA, "POST", "/v3/asm/groups", `{"name":"acme-secret-group","description":"acme-group-description"}`)
		var g struct{ ID int64 }
		if code != 201 || json.Unmarshal([]byte(body), &g) != nil {
			t.Fatalf("acme creates a group: %d %s", code, body)
		}
		v.IDs["group"] = fmt.Sprint(g.ID)
	})
	tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		code, body, _ := f.call(t, f.keyA, "GET", "/v3/asm/groups", "")
		want := fmt.Sprintf(`[{"id":7,"name":"","description":"","is_default":false,"unsubscribes":1},{"id":%s,"name":"acme-secret-group","description":"acme-group-description","is_default":false,"unsubscribes":0}]`, v.IDs["group"])
		if code != 200 || strings.TrimSpace(body) != want {
			t.Errorf("acme's groups after globex's attempts: %d %s\nwant %s", code, body, want)
		}
	})
}
