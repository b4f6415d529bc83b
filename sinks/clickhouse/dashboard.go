package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// BounceReasons counts one account's bounce events in [from, to) per reason
// code, classification and bounce type, most first, at most limit rows.
func (s *Store) BounceReasons(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.ReasonCount, error) {
	q := qDashboardReasons
	rows, err := s.conn.Query(ctx, q.SQL, account, unixSeconds(from), unixSeconds(to), limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []analytics.ReasonCount
	for rows.Next() {
		var r analytics.ReasonCount
		if err := rows.Scan(&r.ReasonCode, &r.Classification, &r.BounceType, &r.Bounces, &r.Blocks, &r.Example); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// TopDomains returns the stats counts of one account's limit recipient
// domains with the most requests (processed events and drops) in
// [from, to), most first.
func (s *Store) TopDomains(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.DomainCounts, error) {
	q := qDashboardDomains
	f, t := unixSeconds(from), unixSeconds(to)
	rows, err := s.conn.Query(ctx, q.SQL, account, f, t, account, f, t, limit, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []analytics.DomainCounts
	for rows.Next() {
		var r analytics.DomainCounts
		var volume uint64
		c := &r.Counts
		if err := rows.Scan(&r.Domain, &c.Processed, &c.DerivedDrops, &c.Drops, &c.BounceDrops, &c.SpamReportDrops,
			&c.UnsubscribeDrops, &c.InvalidDrops, &c.Delivered, &c.Deferred, &c.Bounces, &c.Blocks,
			&c.Opens, &c.UniqueOpens, &c.Clicks, &c.UniqueClicks, &c.SpamReports, &c.Unsubscribes, &volume); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
