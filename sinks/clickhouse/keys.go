package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/accounts"
)

// API keys (the api_keys table): accounts.Key, versions, newest wins.

// WriteAPIKey stores a key's state as of at (newest wins).
func (s *Store) WriteAPIKey(ctx context.Context, k accounts.Key, at time.Time) error {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return s.insert(ctx, qInsertAPIKeys, func(b driver.Batch) error {
		return b.Append(k.AccountID, k.KeyID, k.Hash, k.Name, scopes, k.Created.UTC().Truncate(time.Second), b2u(k.Revoked), uint64(at.UnixNano()))
	})
}

// APIKeys returns the current state of every key of accountID ("" for all
// accounts), revoked ones included.
func (s *Store) APIKeys(ctx context.Context, accountID string) ([]accounts.Key, error) {
	rows, err := s.conn.Query(ctx, qAPIKeys.SQL, accountID, accountID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qAPIKeys.Name, err)
	}
	defer rows.Close()
	var out []accounts.Key
	for rows.Next() {
		var k accounts.Key
		var revoked uint8
		if err := rows.Scan(&k.KeyID, &k.AccountID, &k.Hash, &k.Name, &k.Scopes, &k.Created, &revoked); err != nil {
			return nil, fmt.Errorf("%s: %w", qAPIKeys.Name, err)
		}
		k.Revoked = revoked == 1
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey disables a key for good and returns it.
func (s *Store) RevokeAPIKey(ctx context.Context, keyID string, at time.Time) (accounts.Key, error) {
	keys, err := s.APIKeys(ctx, "")
	if err != nil {
		return accounts.Key{}, err
	}
	for _, k := range keys {
		if k.KeyID == keyID {
			k.Revoked = true
			return k, s.WriteAPIKey(ctx, k, at)
		}
	}
	return accounts.Key{}, fmt.Errorf("%w: %q", accounts.ErrNoKey, keyID)
}
