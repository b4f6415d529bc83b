package clickhouse

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// Stats returns the counts of the account's periods and keys that have
// events, by period and then key. Periods without events are not returned.
func (s *Store) Stats(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error) {
	by := q.AggregatedBy
	switch by {
	case "":
		by = "day"
	case "day", "week", "month":
	default:
		return nil, fmt.Errorf("stats: aggregated_by %q: want day, week or month", by)
	}
	from, to := unixSeconds(q.From), unixSeconds(q.To)
	args := []any{by, by, account, from, to}
	var query Query
	switch q.Segment {
	case analytics.SegmentGlobal:
		query = qStatsGlobal
	case analytics.SegmentCategory, analytics.SegmentDomain:
		if len(q.Keys) == 0 {
			return nil, nil
		}
		query = qStatsCategories
		if q.Segment == analytics.SegmentDomain {
			query = qStatsDomains
		}
		args = append(args, q.Keys)
	case analytics.SegmentProvider:
		query = qStatsProviders
		if len(q.Keys) == 0 {
			args = append(args, uint8(1), []string{""})
		} else {
			args = append(args, uint8(0), q.Keys)
		}
	default:
		return nil, fmt.Errorf("stats: unknown segment %q", q.Segment)
	}
	limit := uint64(math.MaxInt64)
	if q.MaxRows > 0 {
		limit = uint64(q.MaxRows)
	}
	args = append(args, limit)
	rows, err := s.conn.Query(ctx, query.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query.Name, err)
	}
	defer rows.Close()
	var out []analytics.StatsRow
	for rows.Next() {
		var r analytics.StatsRow
		c := &r.Counts
		dst := []any{&r.Period}
		if q.Segment != analytics.SegmentGlobal {
			dst = append(dst, &r.Key)
		}
		dst = append(dst, &c.Processed, &c.DerivedDrops, &c.Drops, &c.BounceDrops, &c.SpamReportDrops,
			&c.UnsubscribeDrops, &c.InvalidDrops, &c.Delivered, &c.Deferred, &c.Bounces, &c.Blocks,
			&c.Opens, &c.UniqueOpens, &c.Clicks, &c.UniqueClicks, &c.SpamReports, &c.Unsubscribes)
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("%s: %w", query.Name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// unixSeconds clamps t to DateTime's range.
func unixSeconds(t time.Time) uint32 {
	return uint32(min(max(t.Unix(), 0), 1<<32-1))
}
