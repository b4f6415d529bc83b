package main

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// TestAPILegacyBounces: SendGrid's v2 bounce calls on real ClickHouse:
// the key as api_user=apikey&api_key, dates, type=soft for an imported
// 4.x.x entry, counts, and deletes by address, by type and of the whole
// list; globex's list is untouched throughout.
func TestAPILegacyBounces(t *testing.T) {
	f := newAPIFixture(t)
	t0 := time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC)
	for i, e := range []string{"ann@acme.org", "bob@acme.org", "cat@acme.org"} {
		f.addEntry(t, "acme", "bounces", e, t0.Add(time.Duration(i)*24*time.Hour))
	}
	if err := f.store.WriteSuppressions(context.Background(), []suppression.Change{{AccountID: "acme", List: "bounces",
		Email: "dan@acme.org", EmailNorm: "dan@acme.org", At: t0, Reason: "452 4.2.2 mailbox full", Status: "4.2.2", Source: "import"}}); err != nil {
		t.Fatal(err)
	}
	f.addEntry(t, "globex", "bounces", "own@globex.org", t0)
	auth := "api_user=apikey&api_key=" + url.QueryEscape(f.keyA)
	call := func(path string) string {
		t.Helper()
		code, body, _ := f.call(t, "", "GET", path, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		return strings.TrimSpace(body)
	}
	got := call("/api/bounces.get.json?" + auth + "&date=1&start_date=2025-11-26&end_date=2025-11-27")
	want := `[{"status":"5.1.1","created":"2025-11-27 09:00:00","reason":"550 5.1.1 user unknown","email":"cat@acme.org"},` +
		`{"status":"5.1.1","created":"2025-11-26 09:00:00","reason":"550 5.1.1 user unknown","email":"bob@acme.org"}]`
	if got != want {
		t.Errorf("get with dates:\n%s\nwant\n%s", got, want)
	}
	for query, want := range map[string]string{
		"":                       `{"count":4}`,
		"&type=soft":             `{"count":1}`,
		"&type=hard":             `{"count":3}`,
		"&start_date=2025-11-26": `{"count":2}`,
		"&email=CAT@acme.org":    `{"count":1}`,
	} {
		if got := call("/api/bounces.count.json?" + auth + query); got != want {
			t.Errorf("count%s: %s, want %s", query, got, want)
		}
	}
	if got := call("/api/bounces.get.json?" + auth + "&type=soft"); !strings.Contains(got, `"email":"dan@acme.org"`) || strings.Count(got, "email") != 1 {
		t.Errorf("type=soft: %s", got)
	}
	call("/api/bounces.delete.json?" + auth + "&type=soft")
	call("/api/bounces.delete.json?" + auth + "&email=ann@acme.org")
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); strings.Join(got, " ") != "cat@acme.org bob@acme.org" {
		t.Errorf("after deleting the soft one and ann: %v", got)
	}
	if got := call("/api/bounces.delete.json?" + auth); got != `{"message":"success"}` {
		t.Errorf("delete all: %s", got)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); len(got) != 0 {
		t.Errorf("after deleting the whole list: %v", got)
	}
	if got := f.emails(t, f.keyB, "/v3/suppression/bounces"); strings.Join(got, " ") != "own@globex.org" {
		t.Errorf("globex's list: %v", got)
	}
	code, body, _ := f.call(t, "", "GET", "/api/bounces.get.json?api_user=apikey&api_key=SG.x.y", "")
	if code != 401 || !strings.HasPrefix(body, `{"message":"error","errors":[`) {
		t.Errorf("a wrong key: %d %s", code, body)
	}
}

// Tenancy of the v2 bounce calls: globex's key (Bearer, as the tenancy
// test sends every request) naming acme's address every way.
func init() {
	e := tenancyExercises
	for _, m := range []string{"GET", "POST"} {
		e[m+" /api/bounces.get.json"] = tries(
			tenancyAttempt{m, "/api/bounces.get.json?date=1&email={email}", ""},
			tenancyAttempt{m, "/api/bounces.get.json?date=1&account_id=acme&type=hard", ""})
		// (globex's own entries of the victim's address, which its writes
		// import with created 1970, are outside the day asked for.)
		e[m+" /api/bounces.count.json"] = tries(
			tenancyAttempt{m, "/api/bounces.count.json?email={email}&start_date=2025-11-27&end_date=2025-11-27", ""})
		e[m+" /api/bounces.delete.json"] = tries(
			tenancyAttempt{m, "/api/bounces.delete.json?email={email}", ""},
			tenancyAttempt{m, "/api/bounces.delete.json?start_date=2025-11-01&end_date=2025-11-30", ""},
			tenancyAttempt{m, "/api/bounces.delete.json", ""})
	}
}
