package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Suppressions returns the current entries q selects, newest first, then by
// address.
func (s *Store) Suppressions(ctx context.Context, account string, q suppression.Query) ([]suppression.Entry, error) {
	like := q.EmailLike
	if like == "" {
		like = "%"
	}
	to := q.To
	if to == 0 {
		to = ^uint32(0)
	}
	limit := q.Limit
	if limit == 0 {
		limit = 500
	}
	rows, err := s.conn.Query(ctx, qSuppressionsList.SQL, account, q.List, q.GroupID, like, q.From, to, q.Bounce, q.Bounce, q.Offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qSuppressionsList.Name, err)
	}
	defer rows.Close()
	var out []suppression.Entry
	for rows.Next() {
		var e suppression.Entry
		var del uint8
		if err := rows.Scan(&e.EmailNorm, &e.Email, &e.Created, &e.Reason, &e.Status, &e.Classification, &e.ReasonCode, &del); err != nil {
			return nil, fmt.Errorf("%s: %w", qSuppressionsList.Name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// CountSuppressions counts the current entries q selects (its Offset and
// Limit aside).
func (s *Store) CountSuppressions(ctx context.Context, account string, q suppression.Query) (uint64, error) {
	like := q.EmailLike
	if like == "" {
		like = "%"
	}
	to := q.To
	if to == 0 {
		to = ^uint32(0)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, qSuppressionsCount.SQL, account, q.List, q.GroupID, like, q.From, to, q.Bounce, q.Bounce).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", qSuppressionsCount.Name, err)
	}
	return n, nil
}

// DeleteAllSuppressions removes every current entry of one list of one
// account as of at: entries whose newest change is older than at. A change
// with an earlier event time that arrives later can still add an address
// back; one-address deletes (WriteSuppressions) have no such gap.
func (s *Store) DeleteAllSuppressions(ctx context.Context, accountID, list string, group int64, at time.Time, source string) error {
	err := s.conn.Exec(ctx, qSuppressionsDeleteAll.SQL, uint32(max(at.Unix(), 0)), suppression.Change{At: at, Deleted: true}.Version(), source, accountID, list, group)
	if err != nil {
		return fmt.Errorf("%s: %w", qSuppressionsDeleteAll.Name, err)
	}
	return nil
}

// BounceClassifications counts the account's bounce events per day and
// classification in [from, to).
func (s *Store) BounceClassifications(ctx context.Context, accountID string, from, to time.Time) ([]analytics.DayCount, error) {
	return s.dayCounts(ctx, qBounceClassifications, accountID, unix32(from), unix32(to))
}

// BounceClassificationDomains counts an account's bounce events of one
// classification per UTC day and recipient domain in [from, to).
func (s *Store) BounceClassificationDomains(ctx context.Context, accountID, class string, from, to time.Time) ([]analytics.DayCount, error) {
	return s.dayCounts(ctx, qBounceClassificationDomains, accountID, class, unix32(from), unix32(to))
}

func unix32(t time.Time) uint32 { return uint32(min(max(t.Unix(), 0), int64(^uint32(0)))) }

func (s *Store) dayCounts(ctx context.Context, q Query, args ...any) ([]analytics.DayCount, error) {
	rows, err := s.conn.Query(ctx, q.SQL, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []analytics.DayCount
	for rows.Next() {
		var c analytics.DayCount
		if err := rows.Scan(&c.Day, &c.Key, &c.N); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
