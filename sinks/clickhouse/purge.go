package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/accounts"
)

// SetBouncePurge stores a new version of accountID's bounce_purge setting
// as of at (p.AccountID is not read); the newest version wins.
func (s *Store) SetBouncePurge(ctx context.Context, accountID string, p accounts.BouncePurge, at time.Time) error {
	if accountID == "" {
		return fmt.Errorf("%s: account is empty", qInsertPurge.Name)
	}
	return s.insert(ctx, qInsertPurge, func(b driver.Batch) error {
		return b.Append(accountID, b2u(p.Enabled), uint32(max(p.HardDays, 0)), uint32(max(p.SoftDays, 0)), at.UTC().Truncate(time.Second), uint64(at.UnixNano()))
	})
}

// BouncePurge returns the account's newest bounce_purge setting; an
// account that never set one gets everything zero.
func (s *Store) BouncePurge(ctx context.Context, accountID string) (accounts.BouncePurge, error) {
	out := accounts.BouncePurge{AccountID: accountID}
	rows, err := s.conn.Query(ctx, qPurgeGet.SQL, accountID)
	if err != nil {
		return out, fmt.Errorf("%s: %w", qPurgeGet.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var en uint8
		var h, sd uint32
		if err := rows.Scan(&en, &h, &sd, &out.Updated); err != nil {
			return out, fmt.Errorf("%s: %w", qPurgeGet.Name, err)
		}
		out.Enabled, out.HardDays, out.SoftDays = en == 1, int(h), int(sd)
	}
	return out, rows.Err()
}

// EnabledBouncePurges returns the setting of every account whose purge is
// enabled with some days, ordered by account.
func (s *Store) EnabledBouncePurges(ctx context.Context) ([]accounts.BouncePurge, error) {
	rows, err := s.conn.Query(ctx, qPurgeEnabled.SQL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qPurgeEnabled.Name, err)
	}
	defer rows.Close()
	var out []accounts.BouncePurge
	for rows.Next() {
		var p accounts.BouncePurge
		var en uint8
		var h, sd uint32
		if err := rows.Scan(&p.AccountID, &en, &h, &sd, &p.Updated); err != nil {
			return nil, fmt.Errorf("%s: %w", qPurgeEnabled.Name, err)
		}
		p.Enabled, p.HardDays, p.SoftDays = en == 1, int(h), int(sd)
		out = append(out, p)
	}
	return out, rows.Err()
}
