package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/pipeline"
)

var _ pipeline.History = (*Store)(nil)

var (
	qRecipientHistory = register(Query{Name: "recipient_history.read",
		SQL: "SELECT email_norm, event, reason_code, bounce_type, toUInt32(timestamp) FROM recipient_history " +
			"WHERE account_id = ? AND email_norm IN (?) AND timestamp >= toDateTime(?) ORDER BY timestamp",
		Sample: []any{"default", "kim@example.com", uint32(1764201600)}})
	qInsertHistory = register(Query{Name: "recipient_history.insert",
		SQL: insertSQL("recipient_history", []string{"ingest_date", "account_id", "email_norm", "timestamp", "event", "reason_code", "bounce_type"}), Insert: true})
)

// RecipientHistory returns the deliveries and escalating soft bounces of
// the given recipients of one account since a time, oldest first. The
// table is ordered by recipient, so this reads only their rows.
func (s *Store) RecipientHistory(ctx context.Context, account string, emails []string, since time.Time) ([]pipeline.HistoryEvent, error) {
	if len(emails) == 0 {
		return nil, nil
	}
	sql := strings.Replace(qRecipientHistory.SQL, "IN (?)", "IN (?"+strings.Repeat(", ?", len(emails)-1)+")", 1)
	args := make([]any, 0, len(emails)+2)
	args = append(args, account)
	for _, e := range emails {
		args = append(args, e)
	}
	args = append(args, uint32(max(since.Unix(), 0)))
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qRecipientHistory.Name, err)
	}
	defer rows.Close()
	var out []pipeline.HistoryEvent
	for rows.Next() {
		e := pipeline.HistoryEvent{AccountID: account}
		var ts uint32
		if err := rows.Scan(&e.EmailNorm, &e.Event, &e.ReasonCode, &e.BounceType, &ts); err != nil {
			return nil, err
		}
		e.Timestamp = int64(ts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// WriteHistory records deliveries and escalating soft bounces (merged with
// concurrent calls, like WriteEvents; a repeat is harmless to the policy).
func (s *Store) WriteHistory(ctx context.Context, events []pipeline.HistoryEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.writers().history.write(ctx, events)
}

func (s *Store) insertHistory(ctx context.Context, parts [][]pipeline.HistoryEvent) error {
	events := flatten(parts)
	n := len(events)
	date, _ := s.ingestTime()
	dates, stamps := make([]time.Time, n), make([]time.Time, n)
	accounts, emails, kinds, reasons, types := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, e := range events {
		dates[i], stamps[i] = date, time.Unix(e.Timestamp, 0).UTC()
		accounts[i], emails[i], kinds[i], reasons[i], types[i] = e.AccountID, e.EmailNorm, e.Event, e.ReasonCode, e.BounceType
	}
	return s.insert(ctx, qInsertHistory, func(b driver.Batch) error {
		return appendColumns(b, dates, accounts, emails, stamps, kinds, reasons, types)
	})
}
