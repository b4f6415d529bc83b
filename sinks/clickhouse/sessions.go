package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/accounts"
)

// WriteSessions stores dashboard session states (accounts.Session), one
// insert for all.
func (s *Store) WriteSessions(ctx context.Context, ss []accounts.Session) error {
	if len(ss) == 0 {
		return nil
	}
	version := uint64(time.Now().UnixNano())
	return s.insert(ctx, qInsertSessions, func(b driver.Batch) error {
		for _, x := range ss {
			if err := b.Append(x.IDHash, x.AccountID, x.KeyID, x.KeyHash, x.Created.UTC().Truncate(time.Second),
				x.Seen.UTC().Truncate(time.Second), b2u(x.Ended), version); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sessions returns the sessions created at or after since that have not
// ended: all of them, or with hash set only that one.
func (s *Store) Sessions(ctx context.Context, hash string, since time.Time) ([]accounts.Session, error) {
	rows, err := s.conn.Query(ctx, qSessions.SQL, uint32(since.Unix()), hash, hash)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qSessions.Name, err)
	}
	defer rows.Close()
	var out []accounts.Session
	for rows.Next() {
		var x accounts.Session
		if err := rows.Scan(&x.IDHash, &x.AccountID, &x.KeyID, &x.KeyHash, &x.Created, &x.Seen); err != nil {
			return nil, fmt.Errorf("%s: %w", qSessions.Name, err)
		}
		out = append(out, x)
	}
	return out, rows.Err()
}
