package clickhouse

import (
	"context"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
)

// TestBackfillAgents: opens and clicks stored without their user agent and
// place classified get them from the backfill, and the stats by browser
// and country then count them (from rebuilt rollups), as if they had been
// classified at ingest.
func TestBackfillAgents(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rows := statsFixture()
	uas := map[enrich.UserAgent]string{}
	for i := range rows {
		// What the producer sent: a user agent and an ip per classified row.
		a, p := rows[i].Agent, rows[i].Place
		if a != (enrich.UserAgent{}) {
			rows[i].UserAgent = "UA " + a.Browser + "/" + a.Client + "/" + a.Device
			uas[a] = rows[i].UserAgent
		}
		if p != (enrich.Place{}) {
			rows[i].IP = "ip " + p.Country + "/" + p.Region
		}
	}
	stored := append([]pipeline.Row(nil), rows...)
	for i := range stored { // as stored before migration 0018
		stored[i].Agent, stored[i].Place = enrich.UserAgent{}, enrich.Place{}
	}
	if err := s.WriteEvents(ctx, stored); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil {
		t.Fatal(err)
	}
	from, to := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	q := analytics.StatsQuery{From: from, To: to, AggregatedBy: "month", Segment: analytics.SegmentBrowser}
	if got, err := s.Stats(ctx, "acme", q); err != nil || len(got) != 0 {
		t.Fatalf("before the backfill: %v %v, want no browsers", got, err)
	}
	byUA := map[string]enrich.UserAgent{}
	for a, ua := range uas {
		byUA[ua] = a
	}
	var chunks int
	n, err := s.BackfillAgents(ctx, BackfillOptions{From: from, To: to, ChunkDays: 40,
		Agent: func(ua string) (string, string, string) { a := byUA[ua]; return a.Browser, a.Client, a.Device },
		Place: func(ip string) (string, string) {
			for _, r := range rows {
				if r.IP == ip {
					return r.Place.Country, r.Place.Region
				}
			}
			return "", ""
		},
		Progress: func(done, total int, a, b time.Time, agents, places int, took time.Duration) { chunks++ },
	})
	if err != nil || n != 3 || chunks != 3 {
		t.Fatalf("backfill: %d chunks (%d reported), %v; want 3 of 40 days over 92", n, chunks, err)
	}
	for _, seg := range []analytics.StatsQuery{q,
		{From: from, To: to, AggregatedBy: "week", Segment: analytics.SegmentCountry},
		{From: from, To: to, Segment: analytics.SegmentRegion, Keys: []string{"US"}},
		{From: from, To: to, Segment: analytics.SegmentClient, Class: "phone"}} {
		got, err := s.Stats(ctx, "acme", seg)
		if err != nil {
			t.Fatal(err)
		}
		want := expectStats(rows, statsCase{"acme", seg})
		if len(got) != len(want) || len(want) == 0 {
			t.Errorf("%s: %d rows, want %d", seg.Segment, len(got), len(want))
		}
		for _, r := range got {
			if w := want[[2]string{r.Period, r.Key}]; r.Counts != w {
				t.Errorf("%s %s %s: %+v, want %+v", seg.Segment, r.Period, r.Key, r.Counts, w)
			}
		}
		clean, _, err := s.rollupPlan(ctx, "acme", dimBrowser, dayOf(from), dayOf(to))
		if err != nil || len(clean) != 7 {
			t.Errorf("%d days from the rollups after the backfill, want 7 (%v)", len(clean), err)
		}
	}
	// Again: nothing left to classify.
	n, err = s.BackfillAgents(ctx, BackfillOptions{From: from, To: to, ChunkDays: 40,
		Agent: func(ua string) (string, string, string) { t.Errorf("classified %q again", ua); return "", "", "" }})
	if err != nil || n != 3 {
		t.Errorf("second backfill: %d %v", n, err)
	}
}
