package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/accounts"
)

// SetForwardBounce stores a new version of accountID's forward_bounce
// setting as of at (fb.AccountID is not read); the newest version wins
// whatever order writes arrive in.
func (s *Store) SetForwardBounce(ctx context.Context, accountID string, fb accounts.ForwardBounce, at time.Time) error {
	if accountID == "" {
		return fmt.Errorf("%s: account is empty", qInsertForwarding.Name)
	}
	return s.insert(ctx, qInsertForwarding, func(b driver.Batch) error {
		return b.Append(accountID, b2u(fb.Enabled), fb.Email, at.UTC().Truncate(time.Second), uint64(at.UnixNano()))
	})
}

// ForwardBounce returns the account's newest forward_bounce setting; an
// account that never set one gets {Enabled: false, Email: ""}.
func (s *Store) ForwardBounce(ctx context.Context, accountID string) (accounts.ForwardBounce, error) {
	out := accounts.ForwardBounce{AccountID: accountID}
	rows, err := s.conn.Query(ctx, qForwardingGet.SQL, accountID)
	if err != nil {
		return out, fmt.Errorf("%s: %w", qForwardingGet.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var en uint8
		if err := rows.Scan(&en, &out.Email, &out.Updated); err != nil {
			return out, fmt.Errorf("%s: %w", qForwardingGet.Name, err)
		}
		out.Enabled = en == 1
	}
	return out, rows.Err()
}

// EnabledForwardBounces returns the setting of every account that has
// forwarding enabled with an address, ordered by account.
func (s *Store) EnabledForwardBounces(ctx context.Context) ([]accounts.ForwardBounce, error) {
	rows, err := s.conn.Query(ctx, qForwardingEnabled.SQL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qForwardingEnabled.Name, err)
	}
	defer rows.Close()
	var out []accounts.ForwardBounce
	for rows.Next() {
		var fs accounts.ForwardBounce
		var en uint8
		if err := rows.Scan(&fs.AccountID, &en, &fs.Email, &fs.Updated); err != nil {
			return nil, fmt.Errorf("%s: %w", qForwardingEnabled.Name, err)
		}
		fs.Enabled = en == 1
		out = append(out, fs)
	}
	return out, rows.Err()
}
