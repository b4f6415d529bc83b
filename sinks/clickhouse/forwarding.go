package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ForwardSetting is an account's bounce forwarding setting: whether bounces
// are forwarded and to which address ("" when none was set).
type ForwardSetting struct {
	AccountID string
	Enabled   bool
	Email     string
	// Updated is when the setting was last changed (zero when never).
	Updated time.Time
}

// WriteForwardSetting stores a new version of the account's setting as of
// at; the newest version wins whatever order writes arrive in.
func (s *Store) WriteForwardSetting(ctx context.Context, fs ForwardSetting, at time.Time) error {
	if fs.AccountID == "" {
		return fmt.Errorf("%s: account is empty", qInsertForwarding.Name)
	}
	return s.insert(ctx, qInsertForwarding, func(b driver.Batch) error {
		return b.Append(fs.AccountID, b2u(fs.Enabled), fs.Email, at.UTC().Truncate(time.Second), uint64(at.UnixNano()))
	})
}

// ForwardSetting returns the account's newest setting; an account that
// never set one gets {Enabled: false, Email: ""}.
func (s *Store) ForwardSetting(ctx context.Context, accountID string) (ForwardSetting, error) {
	out := ForwardSetting{AccountID: accountID}
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

// EnabledForwardSettings returns the setting of every account that has
// forwarding enabled with an address, ordered by account.
func (s *Store) EnabledForwardSettings(ctx context.Context) ([]ForwardSetting, error) {
	rows, err := s.conn.Query(ctx, qForwardingEnabled.SQL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qForwardingEnabled.Name, err)
	}
	defer rows.Close()
	var out []ForwardSetting
	for rows.Next() {
		var fs ForwardSetting
		var en uint8
		if err := rows.Scan(&fs.AccountID, &en, &fs.Email, &fs.Updated); err != nil {
			return nil, fmt.Errorf("%s: %w", qForwardingEnabled.Name, err)
		}
		fs.Enabled = en == 1
		out = append(out, fs)
	}
	return out, rows.Err()
}
