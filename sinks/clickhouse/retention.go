package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// DropExpired drops the partitions of events and dead_letters (and of the
// tables written beside them: recipient_history, stats_marks,
// message_index) whose ingest month is more than keepMonths before now's
// month. The stats rollups (stats_daily) keep the dropped days' counts. ClickHouse 18.16 has no
// TTL, so retention works on whole partitions. It returns what it dropped,
// as "table:YYYYMM".
func (s *Store) DropExpired(ctx context.Context, keepMonths int, now time.Time) ([]string, error) {
	if keepMonths <= 0 {
		return nil, fmt.Errorf("retention: keep months %d: want at least 1", keepMonths)
	}
	now = now.UTC()
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -keepMonths, 0)
	cutoff := first.Year()*100 + int(first.Month())
	var dropped []string
	for _, t := range []struct {
		table string
		drop  Query
	}{{"events", qDropEventsPartition}, {"dead_letters", qDropDeadLettersPartition}, {"recipient_history", qDropHistoryPartition},
		// Written with the events of the same batch (same ingest month).
		{"stats_marks", qDropStatsMarksPartition}, {"message_index", qDropMessageIndexPartition}} {
		rows, err := s.conn.Query(ctx, qPartitions.SQL, t.table)
		if err != nil {
			return dropped, fmt.Errorf("list partitions of %s: %w", t.table, err)
		}
		var old []int
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return dropped, err
			}
			if n, err := strconv.Atoi(p); err == nil && n < cutoff {
				old = append(old, n)
			}
		}
		rows.Close()
		for _, p := range old {
			if err := s.conn.Exec(ctx, t.drop.SQL, uint32(p)); err != nil {
				return dropped, fmt.Errorf("drop partition %d of %s: %w", p, t.table, err)
			}
			dropped = append(dropped, fmt.Sprintf("%s:%d", t.table, p))
		}
	}
	return dropped, nil
}

// RunRetention drops expired partitions (DropExpired with keepMonths) now
// and then once a day until ctx ends, logging what it dropped and failures
// (a failed day is tried again the next day).
func (s *Store) RunRetention(ctx context.Context, keepMonths int, log *slog.Logger) {
	for {
		dropped, err := s.DropExpired(ctx, keepMonths, time.Now())
		if err != nil {
			log.Warn("retention: drop old partitions failed", "err", err)
		} else if len(dropped) > 0 {
			log.Info("retention: dropped partitions", "partitions", dropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(24 * time.Hour):
		}
	}
}
