package clickhouse

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/enrich"
)

// UnmatchedTexts reports the stored bounces and deferrals of q's window
// that no text rule classified, grouped by their masked reply text, most
// frequent first (queries_classify.go). ClickHouse does the grouping, so
// memory here follows q.Limit, not the number of events.
func (s *Store) UnmatchedTexts(ctx context.Context, q enrich.UnmatchedQuery) (enrich.UnmatchedReport, error) {
	var rep enrich.UnmatchedReport
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	all := b2u(q.Account == "")
	since, until := uint32(max(q.Since.Unix(), 0)), uint32(max(q.Until.Unix(), 0))
	if err := s.conn.QueryRow(ctx, qUnmatchedTotals.SQL, all, q.Account, since, until).Scan(&rep.Total, &rep.Unmatched, &rep.Unknown); err != nil {
		return rep, fmt.Errorf("%s: %w", qUnmatchedTotals.Name, err)
	}
	rows, err := s.conn.Query(ctx, qUnmatchedTexts.SQL, all, q.Account, since, until, uint64(limit))
	if err != nil {
		return rep, fmt.Errorf("%s: %w", qUnmatchedTexts.Name, err)
	}
	defer rows.Close()
	rep.Groups = []enrich.UnmatchedText{}
	for rows.Next() {
		var g enrich.UnmatchedText
		if err := rows.Scan(&g.Text, &g.ReplyCode, &g.Status, &g.Count, &g.Unclassified, &g.Providers, &g.Rules, &g.Example, &g.At); err != nil {
			return rep, fmt.Errorf("%s: %w", qUnmatchedTexts.Name, err)
		}
		g.At = g.At.UTC()
		rep.Groups = append(rep.Groups, g)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("%s: %w", qUnmatchedTexts.Name, err)
	}
	return rep, nil
}
