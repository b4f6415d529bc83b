package clickhouse

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/suppression"
)

// ExportPageSize is how many entries EachSuppression reads per query.
const ExportPageSize = 10000

// EachSuppression calls fn for every current entry of one list of one
// account (group 0 unless a group unsubscribe list), in address order,
// reading pageSize entries at a time (ExportPageSize when 0) so memory stays
// flat whatever the list's size. It stops at fn's first error and returns
// it.
func (s *Store) EachSuppression(ctx context.Context, accountID, list string, group int64, pageSize int, fn func(suppression.Entry) error) error {
	if pageSize <= 0 {
		pageSize = ExportPageSize
	}
	cursor := ""
	for {
		page, err := s.exportPage(ctx, accountID, list, group, cursor, pageSize)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		cursor = page[len(page)-1].EmailNorm
	}
}

func (s *Store) exportPage(ctx context.Context, accountID, list string, group int64, cursor string, n int) ([]suppression.Entry, error) {
	q := qSuppressionsExportPage
	rows, err := s.conn.Query(ctx, q.SQL, accountID, list, group, cursor, uint64(n))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	out := make([]suppression.Entry, 0, n)
	for rows.Next() {
		var e suppression.Entry
		var del uint8
		if err := rows.Scan(&e.EmailNorm, &e.Email, &e.Created, &e.Reason, &e.Status, &e.Classification, &e.ReasonCode, &del); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
