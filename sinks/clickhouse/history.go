package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/bouncer-mail/bouncer/pipeline"
)

var _ pipeline.History = (*Store)(nil)

var qRecipientHistory = register(Query{Name: "events.recipient_history",
	SQL: "SELECT email_norm, event, reason_code, bounce_type, toUInt32(timestamp) FROM events " +
		"WHERE account_id = ? AND has(?, email_norm) AND timestamp >= toDateTime(?) AND event IN ('bounce', 'delivered') AND derived = 0 " +
		"ORDER BY timestamp",
	Sample: []any{"default", []string{"kim@example.com"}, uint32(1764201600)}})

// RecipientHistory returns the bounce and delivered events of the given
// recipients of one account since a time, oldest first.
func (s *Store) RecipientHistory(ctx context.Context, account string, emails []string, since time.Time) ([]pipeline.HistoryEvent, error) {
	rows, err := s.conn.Query(ctx, qRecipientHistory.SQL, account, emails, uint32(max(since.Unix(), 0)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qRecipientHistory.Name, err)
	}
	defer rows.Close()
	var out []pipeline.HistoryEvent
	for rows.Next() {
		var e pipeline.HistoryEvent
		var ts uint32
		if err := rows.Scan(&e.EmailNorm, &e.Event, &e.ReasonCode, &e.BounceType, &ts); err != nil {
			return nil, err
		}
		e.Timestamp = int64(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}
