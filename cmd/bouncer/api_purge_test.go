package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// TestBouncePurge: settings made through the API, the purge run with an
// injected clock on real ClickHouse. Entries older than the days leave the
// list, each removal announced on the change log and stamped at the
// entry's time plus the days; younger ones, other lists, other accounts
// and disabled settings are untouched; a second run finds nothing more; a
// bounce dated after the removal puts the address back.
func TestBouncePurge(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	now := time.Date(2025, 12, 31, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	bounce := func(account, email, status string, age time.Duration) {
		t.Helper()
		if err := f.store.WriteSuppressions(ctx, []suppression.Change{{AccountID: account, List: "bounces", Email: email, EmailNorm: email,
			At: now.Add(-age), Reason: status + " test", Status: status, Source: "test"}}); err != nil {
			t.Fatal(err)
		}
	}
	bounce("acme", "old-hard@acme.org", "5.1.1", 31*day)                     // hard, past 30 days: purged
	bounce("acme", "new-hard@acme.org", "5.1.1", 29*day)                     // hard, within 30 days: stays
	bounce("acme", "old-soft@acme.org", "4.2.2", 8*day)                      // soft, past 7 days: purged
	bounce("acme", "new-soft@acme.org", "4.2.2", 6*day)                      // soft, within 7 days: stays
	bounce("globex", "old@globex.org", "5.1.1", 400*day)                     // globex: disabled
	f.addEntry(t, "acme", "blocks", "old-block@acme.org", now.Add(-400*day)) // not the bounces list
	for key, body := range map[string]string{
		f.keyA: `{"enabled":true,"hard_bounces":30,"soft_bounces":7}`,
		f.keyB: `{"enabled":false,"hard_bounces":1}`,
	} {
		if code, got, _ := f.call(t, key, "PATCH", "/v3/mail_settings/bounce_purge", body); code != 200 {
			t.Fatalf("PATCH %s: %d %s", body, code, got)
		}
	}
	pub := &recordingPublisher{}
	svc := suppression.NewService(f.store, pub, nil)
	purger := &suppression.Purger{Service: svc, Settings: f.store, Now: func() time.Time { return now }}
	n, err := purger.RunOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("first run: removed %d, %v; want 2", n, err)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); !slices.Equal(got, []string{"new-soft@acme.org", "new-hard@acme.org"}) {
		t.Errorf("acme's bounces after the purge: %v", got)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/blocks"); !slices.Equal(got, []string{"old-block@acme.org"}) {
		t.Errorf("acme's blocks: %v", got)
	}
	if got := f.emails(t, f.keyB, "/v3/suppression/bounces"); !slices.Equal(got, []string{"old@globex.org"}) {
		t.Errorf("globex's bounces (purge disabled): %v", got)
	}
	want := map[string]time.Time{"old-hard@acme.org": now.Add(-31 * day).Add(30 * day), "old-soft@acme.org": now.Add(-8 * day).Add(7 * day)}
	check := func(cs []suppression.Change) {
		t.Helper()
		if len(cs) != 2 {
			t.Fatalf("announced %+v, want 2 removals", cs)
		}
		for _, c := range cs {
			if at, ok := want[c.EmailNorm]; !ok || !c.At.Equal(at) || !c.Deleted || c.List != "bounces" || c.AccountID != "acme" || c.Source != suppression.SourcePurge {
				t.Errorf("announced %+v, want the removal of %s as of %v", c, c.EmailNorm, want[c.EmailNorm])
			}
		}
	}
	check(pub.changes)

	// The old bounces delivered again (at-least-once writers) stay removed,
	// and a second run (this process or another replica) removes nothing
	// more.
	pub2 := &recordingPublisher{}
	for _, addr := range []string{"old-hard@acme.org", "old-soft@acme.org"} {
		status := map[string]string{"old-hard@acme.org": "5.1.1", "old-soft@acme.org": "4.2.2"}[addr]
		age := map[string]time.Duration{"old-hard@acme.org": 31 * day, "old-soft@acme.org": 8 * day}[addr]
		bounce("acme", addr, status, age) // (the same addition again: still older than the removal)
	}
	if n, err := (&suppression.Purger{Service: suppression.NewService(f.store, pub2, nil), Settings: f.store, Now: func() time.Time { return now }}).RunOnce(ctx); err != nil || n != 0 {
		t.Errorf("second run: removed %d, %v; want 0 (the removals already won)", n, err)
	}

	// A bounce dated after the removal adds the address back.
	bounce("acme", "old-hard@acme.org", "5.1.1", 12*time.Hour)
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); !slices.Contains(got, "old-hard@acme.org") {
		t.Errorf("a bounce after the purge did not add the address back: %v", got)
	}
	// Ten days later new-soft (6 days old then 16) goes, new-hard (39) too.
	later := now.Add(10 * day)
	n, err = (&suppression.Purger{Service: svc, Settings: f.store, Now: func() time.Time { return later }}).RunOnce(ctx)
	if err != nil || n != 2 {
		t.Errorf("run ten days later: removed %d, %v; want 2", n, err)
	}
	if got := f.emails(t, f.keyA, "/v3/suppression/bounces"); strings.Join(got, " ") != "old-hard@acme.org" {
		t.Errorf("ten days later: %v", got)
	}
}

// Tenancy of the bounce purge setting.
func init() {
	e := tenancyExercises
	e["GET /v3/mail_settings/bounce_purge"] = tries(tenancyAttempt{"GET", "/v3/mail_settings/bounce_purge?account_id=acme", ""})
	e["PATCH /v3/mail_settings/bounce_purge"] = tries(tenancyAttempt{"PATCH", "/v3/mail_settings/bounce_purge", `{"enabled":false,"hard_bounces":null}`})
	leaks = append(leaks, `"hard_bounces":1234`)
	tenancySetups = append(tenancySetups, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		if code, body, _ := f.call(t, f.keyA, "PATCH", "/v3/mail_settings/bounce_purge", `{"enabled":true,"hard_bounces":1234}`); code != 200 {
			t.Fatalf("acme sets its bounce purge: %d %s", code, body)
		}
	})
	tenancyChecks = append(tenancyChecks, func(t *testing.T, f *apiFixture, v *tenancyVictim) {
		if code, body, _ := f.call(t, f.keyA, "GET", "/v3/mail_settings/bounce_purge", ""); code != 200 || strings.TrimSpace(body) != `{"enabled":true,"hard_bounces":1234,"soft_bounces":null}` {
			t.Errorf("acme's bounce purge after globex's attempts: %d %s", code, body)
		}
	})
}
