package clickhouse

import (
	"context"
	"fmt"
	"time"
)

// Stats segments.
const (
	StatsGlobal   = ""
	StatsCategory = "category"
	StatsProvider = "mailbox_provider"
	StatsDomain   = "domain"
	// ProviderOther is the mailbox provider of events whose provider is unknown.
	ProviderOther = "other"
)

// StatCounts are the base counts of one period and segment, each event (by
// sg_event_id) counted once. The SendGrid metrics are computed from them
// (package api).
type StatCounts struct {
	Processed        uint64 // processed events
	DerivedDrops     uint64 // dropped events bouncer derived (each beside a processed event)
	Drops            uint64 // every dropped event, derived or sent by the producer
	BounceDrops      uint64 // dropped, reason "Bounced Address"
	SpamReportDrops  uint64 // dropped, reason "Spam Reporting Address"
	UnsubscribeDrops uint64 // dropped, reason "Unsubscribed Address"
	InvalidDrops     uint64 // dropped, reason "Invalid"
	Delivered        uint64
	Deferred         uint64
	Bounces          uint64 // bounce events of type bounce
	Blocks           uint64 // bounce events of type blocked
	Opens            uint64
	UniqueOpens      uint64 // distinct (sg_message_id, recipient) opening
	Clicks           uint64
	UniqueClicks     uint64 // distinct (sg_message_id, recipient) clicking
	SpamReports      uint64
	Unsubscribes     uint64 // unsubscribe and group_unsubscribe events
}

// StatsQuery selects the stats of one account.
type StatsQuery struct {
	AccountID string
	// From and To bound the event time, [From, To).
	From, To time.Time
	// AggregatedBy is "day", "week" (periods start on Monday) or "month";
	// "" means day.
	AggregatedBy string
	// Segment is StatsGlobal, StatsCategory, StatsProvider or StatsDomain.
	Segment string
	// Keys are the categories, providers or domains to count; required for
	// categories and domains, optional for providers (none: all).
	Keys []string
}

// StatsRow is the counts of one period (its first day, YYYY-MM-DD, UTC)
// and segment key ("" for global stats).
type StatsRow struct {
	Period, Key string
	Counts      StatCounts
}

// Stats returns the counts of the periods and keys that have events, by
// period and then key. Periods without events are not returned.
func (s *Store) Stats(ctx context.Context, q StatsQuery) ([]StatsRow, error) {
	by := q.AggregatedBy
	switch by {
	case "":
		by = "day"
	case "day", "week", "month":
	default:
		return nil, fmt.Errorf("stats: aggregated_by %q: want day, week or month", by)
	}
	from, to := unixSeconds(q.From), unixSeconds(q.To)
	args := []any{by, by, q.AccountID, from, to}
	var query Query
	switch q.Segment {
	case StatsGlobal:
		query = qStatsGlobal
	case StatsCategory, StatsDomain:
		if len(q.Keys) == 0 {
			return nil, nil
		}
		query = qStatsCategories
		if q.Segment == StatsDomain {
			query = qStatsDomains
		}
		args = append(args, q.Keys)
	case StatsProvider:
		query = qStatsProviders
		if len(q.Keys) == 0 {
			args = append(args, uint8(1), []string{""})
		} else {
			args = append(args, uint8(0), q.Keys)
		}
	default:
		return nil, fmt.Errorf("stats: unknown segment %q", q.Segment)
	}
	rows, err := s.conn.Query(ctx, query.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", query.Name, err)
	}
	defer rows.Close()
	var out []StatsRow
	for rows.Next() {
		var r StatsRow
		c := &r.Counts
		dst := []any{&r.Period}
		if q.Segment != StatsGlobal {
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
