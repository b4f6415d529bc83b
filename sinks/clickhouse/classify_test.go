package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestUnmatchedTexts stores bounces classified by the built-in rules and
// checks that the report groups the ones no text rule decided by their
// masked text, with counts, providers and codes, and leaves out the rest.
func TestUnmatchedTexts(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	c := enrich.MustNew()
	t0 := int64(1764201600)
	var rows []pipeline.Row
	add := func(account, email, reason, status string) {
		ev := schemas.Event{Topic: "t", Partition: 0, Offset: int64(len(rows)), Event: "bounce", Type: "bounce",
			Email: email, EmailNorm: email, AccountID: account, Timestamp: t0 + int64(len(rows)), Reason: reason, Status: status,
			SGEventID: "ev" + string(rune('a'+len(rows)))}
		res, err := c.Classify(enrich.Input{Event: "bounce", Type: "bounce", Reason: reason, Status: status, Email: email})
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, pipeline.Row{Event: ev, Provider: res.Provider, Bounce: &res})
	}
	// Code only (status.x.1.1): three texts that differ in the address, the
	// host's IP, a queue id and a number.
	add("acme", "kim@gmail.com", "550 5.1.1 <kim@gmail.com>: mailbox gone from 10.1.2.3 queue AB12CD34EF after 3 tries", "5.1.1")
	add("acme", "lee@yahoo.com", "550 5.1.1 <lee@yahoo.com>: Mailbox gone from 192.168.0.9 queue 9ZZ81QQ7 after 12 tries", "5.1.1")
	add("acme", "ann@example.org", "550  5.1.1 <ann@example.org>: mailbox gone from 10.0.0.1 queue X1Y2Z3W4 after 1 tries", "5.1.1")
	// No rule at all.
	add("acme", "bob@example.org", "zorgle flux capacitor", "")
	// A text rule decided: not in the report.
	add("acme", "kim@gmail.com", "550 5.1.1 The email account that you tried to reach does not exist.", "5.1.1")
	// Another account.
	add("other", "x@example.org", "zorgle flux capacitor", "")
	for _, r := range rows[:3] {
		if r.Bounce.DecidedBy != enrich.DecidedByCode {
			t.Fatalf("%q decided by %q, want code (the test's texts must match no text rule)", r.Reason, r.Bounce.DecidedBy)
		}
	}
	if rows[3].Bounce.DecidedBy != enrich.DecidedByNone || rows[4].Bounce.DecidedBy != enrich.DecidedByText {
		t.Fatalf("decided by %q and %q, want none and text", rows[3].Bounce.DecidedBy, rows[4].Bounce.DecidedBy)
	}
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	rep, err := s.UnmatchedTexts(ctx, enrich.UnmatchedQuery{Account: "acme", Since: time.Unix(t0, 0), Until: time.Unix(t0+3600, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 5 || rep.Unmatched != 4 || rep.Unknown != 0 {
		t.Errorf("totals %d/%d/%d, want 5 bounces, 4 unmatched, 0 unknown", rep.Total, rep.Unmatched, rep.Unknown)
	}
	if len(rep.Groups) != 2 {
		t.Fatalf("groups %+v, want 2", rep.Groups)
	}
	g := rep.Groups[0]
	wantText := "<n> <n> <<addr>>: mailbox gone from <ip> queue <id> after <n> tries"
	if g.Text != wantText || g.Count != 3 || g.Unclassified != 0 || g.ReplyCode != "550" || g.Status != "5.1.1" {
		t.Errorf("first group %+v, want %q x3 with 550 5.1.1", g, wantText)
	}
	if !slices.Equal(g.Providers, []string{"google", "other", "yahoo"}) || !slices.Equal(g.Rules, []string{"status.x.1.1"}) {
		t.Errorf("providers %v rules %v, want google, other, yahoo and status.x.1.1", g.Providers, g.Rules)
	}
	if g.Example != rows[2].Reason {
		t.Errorf("example %q, want the newest text %q", g.Example, rows[2].Reason)
	}
	if g := rep.Groups[1]; g.Text != "zorgle flux capacitor" || g.Count != 1 || g.Unclassified != 1 {
		t.Errorf("second group %+v, want the unclassified text once (the other account's is not counted)", g)
	}
	all, err := s.UnmatchedTexts(ctx, enrich.UnmatchedQuery{Since: time.Unix(t0, 0), Until: time.Unix(t0+3600, 0), Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Groups) != 1 || all.Groups[0].Count != 3 || all.Unmatched != 5 {
		t.Errorf("every account, limit 1: %+v, want the top group and 5 unmatched", all)
	}
}
