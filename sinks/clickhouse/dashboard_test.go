package clickhouse

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestTopDomainsMatchStats: the dashboard's per-domain counts are the stats
// API's counts of the same domains (computed in Go from the fixture), most
// requests first, other accounts and times left out.
func TestTopDomainsMatchStats(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rows := statsFixture()
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// One month, so each domain is one period of the expected stats.
	from, to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	domains := []string{"gmail.com", "yahoo.com", "example.org"}
	want := expectStats(rows, statsCase{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month", Segment: analytics.SegmentDomain, Keys: domains}})
	got, err := s.TopDomains(ctx, "acme", from, to, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(domains) {
		t.Fatalf("got %d domains, want %d: %+v", len(got), len(domains), got)
	}
	volume := func(c analytics.StatCounts) uint64 { return c.Processed + c.Drops } // what the query orders by
	for i, d := range got {
		if w := want[[2]string{"2026-11-01", d.Domain}]; d.Counts != w {
			t.Errorf("%s: got %+v\nwant %+v", d.Domain, d.Counts, w)
		}
		if i > 0 && volume(got[i-1].Counts) < volume(d.Counts) {
			t.Errorf("not ordered by requests: %s before %s", got[i-1].Domain, d.Domain)
		}
	}
	if one, err := s.TopDomains(ctx, "acme", from, to, 1); err != nil || len(one) != 1 || one[0].Domain != got[0].Domain {
		t.Errorf("limit 1: %+v, %v; want only %s", one, err, got[0].Domain)
	}
}

// TestBounceReasons counts bounces and blocks per reason, each sg_event_id
// once, most first, with the newest text as the example.
func TestBounceReasons(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).Unix()
	n := 0
	ev := func(acct, typ, reason string, res enrich.Result, at int64) pipeline.Row {
		n++
		return pipeline.Row{Event: schemas.Event{
			Topic: "reasons", Offset: int64(n), AccountID: acct, Event: schemas.EventBounce, Type: typ,
			Email: "a@example.org", EmailNorm: "a@example.org", Domain: "example.org", Timestamp: at,
			SGEventID: fmt.Sprintf("r%d", n), Reason: reason,
		}, Bounce: &res}
	}
	unknown := enrich.Result{BounceType: "hard", Classification: "Invalid Address", Reason: "user_unknown"}
	blocked := enrich.Result{BounceType: "soft", Classification: "Reputation", Reason: "ip_blocked"}
	full := enrich.Result{BounceType: "soft", Classification: "Mailbox Unavailable", Reason: "mailbox_full"}
	rows := []pipeline.Row{
		ev("acme", "bounce", "550 5.1.1 no such user (old)", unknown, base+10),
		ev("acme", "bounce", "550 5.1.1 no such user (new)", unknown, base+20),
		ev("acme", "bounce", "550 5.1.1 no such user (older)", unknown, base+5),
		ev("acme", "blocked", "554 5.7.1 blocked", blocked, base+30),
		ev("acme", "blocked", "554 5.7.1 blocked again", blocked, base+40),
		ev("acme", "bounce", "452 4.2.2 mailbox full", full, base+50),
		ev("acme", "bounce", "550 5.1.1 too late", unknown, base+7*86400), // after the range
		ev("globex", "bounce", "550 5.1.1 other account", unknown, base+60),
	}
	resend := rows[1]
	resend.Offset = 1000
	rows = append(rows, resend, resend)
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got, err := s.BounceReasons(ctx, "acme", time.Unix(base, 0), time.Unix(base+86400, 0), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []analytics.ReasonCount{
		{ReasonCode: "user_unknown", Classification: "Invalid Address", BounceType: "hard", Bounces: 3, Example: "550 5.1.1 no such user (new)"},
		{ReasonCode: "ip_blocked", Classification: "Reputation", BounceType: "soft", Blocks: 2, Example: "554 5.7.1 blocked again"},
		{ReasonCode: "mailbox_full", Classification: "Mailbox Unavailable", BounceType: "soft", Bounces: 1, Example: "452 4.2.2 mailbox full"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if two, err := s.BounceReasons(ctx, "acme", time.Unix(base, 0), time.Unix(base+86400, 0), 2); err != nil || len(two) != 2 {
		t.Errorf("limit 2: %d rows, %v", len(two), err)
	}
}
