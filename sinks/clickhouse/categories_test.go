package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

func TestDayRuns(t *testing.T) {
	for _, tc := range []struct {
		days []uint32
		max  int
		want [][]uint32
	}{
		{nil, 8, nil},
		{[]uint32{5, 6, 7}, 8, [][]uint32{{5, 6, 7}}},
		{[]uint32{1, 2, 10, 20, 21}, 8, [][]uint32{{1, 2}, {10}, {20, 21}}},
		// Two ranges at most: the closest runs are joined (10 is 8 days
		// from 2 and 10 from 20).
		{[]uint32{1, 2, 10, 20, 21}, 2, [][]uint32{{1, 2, 10}, {20, 21}}},
		{[]uint32{1, 3, 5, 7}, 1, [][]uint32{{1, 3, 5, 7}}},
	} {
		if got := dayRuns(tc.days, tc.max); !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("dayRuns(%v, %d) = %v, want %v", tc.days, tc.max, got, tc.want)
		}
	}
}

// TestCategoriesAndSums: the category list and the sums over a range
// (AggregatedBy "all", AllKeys) equal what the fixture's events give,
// read from the events table, from the rollups, and from both.
func TestCategoriesAndSums(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rows := statsFixture()
	// A category of another account, and one on a day far from the others
	// (days without events in between).
	rows = append(rows,
		pipeline.Row{Event: schemas.Event{Topic: "t", Offset: 90000, AccountID: "other", Event: "delivered", SGEventID: "x1", Timestamp: 1764201600, Categories: []string{"other-only"}}},
		pipeline.Row{Event: schemas.Event{Topic: "t", Offset: 90001, AccountID: "acme", Event: "delivered", SGEventID: "x2", Timestamp: 1735732800, Categories: []string{"new-year"}}})
	day := func(v string) time.Time { d, _ := time.Parse(time.DateOnly, v); return d }
	check := func(t *testing.T, rows []pipeline.Row) {
		t.Helper()
		got, err := s.Categories(ctx, "acme", "")
		if want := []string{"new-year", "news", "receipts"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("Categories: %v %v, want %v", got, err, want)
		}
		if got, err := s.Categories(ctx, "acme", "ne"); err != nil || !slices.Equal(got, []string{"new-year", "news"}) {
			t.Errorf("Categories with prefix ne: %v %v", got, err)
		}
		if got, err := s.Categories(ctx, "nobody", ""); err != nil || len(got) != 0 {
			t.Errorf("Categories of an account without events: %v %v", got, err)
		}
		from, to := day("2026-11-02"), day("2026-11-10")
		q := analytics.StatsQuery{From: from, To: to, AggregatedBy: "all", Segment: analytics.SegmentCategory, AllKeys: true}
		sums, err := s.Stats(ctx, "acme", q)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]analytics.StatCounts{}
		daily := expectStats(rows, statsCase{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "day", Segment: analytics.SegmentCategory,
			Keys: []string{"news", "receipts", "new-year"}}})
		for k, c := range daily {
			w := want[k[1]]
			addCounts(&w, c)
			want[k[1]] = w
		}
		if len(sums) != len(want) || len(want) != 2 {
			t.Fatalf("sums: %v, want %v", sums, want)
		}
		for _, r := range sums {
			if r.Period != "1970-01-01" || r.Counts != want[r.Key] {
				t.Errorf("sum of %s: %s %+v, want %+v", r.Key, r.Period, r.Counts, want[r.Key])
			}
		}
	}
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	t.Run("events table", func(t *testing.T) { check(t, rows) })
	if n, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil || n == 0 {
		t.Fatalf("UpdateRollups: %d chunks, %v", n, err)
	}
	t.Run("rollups", func(t *testing.T) { check(t, rows) })
	// More events on built days: those days are read raw again.
	more := []pipeline.Row{{Event: schemas.Event{Topic: "t", Offset: 90002, AccountID: "acme", Event: "delivered", SGEventID: "x3",
		Timestamp: day("2026-11-03").Unix() + 60, Categories: []string{"news"}}}}
	if err := s.WriteEvents(ctx, more); err != nil {
		t.Fatal(err)
	}
	t.Run("rollups and events", func(t *testing.T) { check(t, append(rows, more...)) })
}

func addCounts(dst *analytics.StatCounts, c analytics.StatCounts) {
	a := (&rollupAgg{counts: *dst})
	a.add(&c, "", time.Time{})
	*dst = a.counts
}
