package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// Stats returns the counts of the account's periods and keys that have
// events, by period and then key. Periods without events are not returned.
// A day's counts come from the rollups when a build covers every event of
// the day, else from the events table (rollups.go); either way they equal
// StatsExact's.
func (s *Store) Stats(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error) {
	return s.stats(ctx, account, q, false)
}

// StatsExact is Stats counted from the events table alone (the exact
// per-day query, dailySQL), never from the rollups: the reference the
// rollups are checked against.
func (s *Store) StatsExact(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error) {
	return s.stats(ctx, account, q, true)
}

func (s *Store) stats(ctx context.Context, account string, q analytics.StatsQuery, exact bool) ([]analytics.StatsRow, error) {
	by := q.AggregatedBy
	switch by {
	case "":
		by = "day"
	case "day", "week", "month", "all":
	default:
		return nil, fmt.Errorf("stats: aggregated_by %q: want day, week, month or all", by)
	}
	dim, err := rollupDim(q.Segment)
	if err != nil {
		return nil, err
	}
	all := dim == dimGlobal || q.AllKeys || (q.Segment != analytics.SegmentRegion && analytics.EveryKeySegment(q.Segment) && len(q.Keys) == 0)
	if !all && len(q.Keys) == 0 {
		return nil, nil
	}
	m, err := s.countStats(ctx, countsQuery{account: account, by: by, dim: dim, all: all, keys: q.Keys, from: q.From, to: q.To, exact: exact})
	if err != nil {
		return nil, err
	}
	if agentDim(dim) {
		m = regroup(m, q)
	}
	var out []analytics.StatsRow
	for _, k := range sortedKeys(m) {
		if q.MaxRows > 0 && len(out) == q.MaxRows {
			break
		}
		out = append(out, analytics.StatsRow{Period: k.period, Key: k.key, Counts: m[k].counts})
	}
	return out, nil
}

// unixSeconds clamps t to DateTime's range.
func unixSeconds(t time.Time) uint32 {
	return uint32(min(max(t.Unix(), 0), 1<<32-1))
}

// regroup turns the rows of a dimension with a classification (client:
// device type; geo: region) into the segment's rows: for regions, the
// region is the key; for clients, only those of q.Class when set; else the
// classifications are summed per key.
func regroup(m map[rollupKey]*rollupAgg, q analytics.StatsQuery) map[rollupKey]*rollupAgg {
	out := make(map[rollupKey]*rollupAgg, len(m))
	for k, a := range m {
		switch {
		case q.Segment == analytics.SegmentRegion:
			if k.class == "" {
				continue // a country's events without a region
			}
			k.key = k.class
		case q.Class != "" && !strings.EqualFold(k.class, q.Class):
			continue
		}
		k.class, k.btype = "", ""
		addTo(out, k, &a.counts, "", time.Time{})
	}
	return out
}
