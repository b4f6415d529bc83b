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
	// ingest_date bounds the partitions read (see historyIngestSlack).
	qRecipientHistory = register(Query{Name: "recipient_history.read",
		SQL: "SELECT email_norm, event, reason_code, bounce_type, toUInt32(timestamp) FROM recipient_history " +
			"WHERE account_id = ? AND email_norm IN (?) AND timestamp >= toDateTime(?) AND ingest_date >= toDate(toDateTime(?)) ORDER BY timestamp",
		Sample: []any{"default", "kim@example.com", uint32(1764201600), uint32(1763596800)}})
	qInsertHistory = register(Query{Name: "recipient_history.insert",
		SQL: insertSQL("recipient_history", []string{"ingest_date", "account_id", "email_norm", "timestamp", "event", "reason_code", "bounce_type"}), Insert: true})
)

// historyIngestSlack is how much earlier than an event's time its history
// row may have been written (ingest_date, the worker's clock). An event is
// stored after it happened, except one dated ahead by clock skew, which the
// pipeline accepts up to its MaxFutureSkew (default 1 h): a week covers
// that with room to spare. The read skips ingest months before since minus
// this, which is where retention keeps most of the table's rows.
const historyIngestSlack = 7 * 24 * time.Hour

// RecipientHistory returns the deliveries and escalating soft bounces of
// the given recipients of one account since a time, oldest first. The
// table is ordered by recipient with 256 rows a granule (migration 0021),
// so this reads the granules that hold their rows: about 256 to 512 rows
// per recipient and part, in the ingest months from since on (less
// historyIngestSlack). A row dated more than historyIngestSlack after the
// day it was stored (an event from a producer whose clock ran ahead by more
// than that, accepted only with the pipeline's future bound turned off) is
// not read.
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
	args = append(args, uint32(max(since.Unix(), 0)), uint32(max(since.Add(-historyIngestSlack).Unix(), 0)))
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
