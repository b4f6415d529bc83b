package clickhouse

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/schemas"
)

// Count is one group of a summary.
type Count struct {
	Key string
	N   uint64
}

// Summary is what the demo and `bouncer summary` print.
type Summary struct {
	// Events counts consumed events; Derived the dropped events bouncer
	// added for processed events to suppressed recipients.
	Events          uint64
	Derived         uint64
	DeadLetters     uint64
	ByType          []Count
	BouncesByClass  []Count // key "classification (hard|soft)"
	SuppressionList []Count
	DeadLetterCodes []Count
}

var qDeadLettersByCode = register(Query{Name: "summary.dead_letters_by_code",
	SQL: "SELECT code, count() AS n FROM dead_letters GROUP BY code ORDER BY n DESC, code"})

// Summarize reads the summary tables.
func (s *Store) Summarize(ctx context.Context) (Summary, error) {
	var out Summary
	if err := s.conn.QueryRow(ctx, qCountEvents.SQL).Scan(&out.Events, &out.Derived); err != nil {
		return out, fmt.Errorf("%s: %w", qCountEvents.Name, err)
	}
	if err := s.conn.QueryRow(ctx, qCountDeadLetters.SQL).Scan(&out.DeadLetters); err != nil {
		return out, fmt.Errorf("%s: %w", qCountDeadLetters.Name, err)
	}
	var err error
	if out.ByType, err = s.counts(ctx, qEventsByType); err != nil {
		return out, err
	}
	if out.SuppressionList, err = s.counts(ctx, qSuppressionsByList); err != nil {
		return out, err
	}
	if out.DeadLetterCodes, err = s.counts(ctx, qDeadLettersByCode); err != nil {
		return out, err
	}
	rows, err := s.conn.Query(ctx, qBouncesByClass.SQL)
	if err != nil {
		return out, fmt.Errorf("%s: %w", qBouncesByClass.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var class, typ string
		var n uint64
		if err := rows.Scan(&class, &typ, &n); err != nil {
			return out, err
		}
		out.BouncesByClass = append(out.BouncesByClass, Count{class + " (" + typ + ")", n})
	}
	return out, rows.Err()
}

func (s *Store) counts(ctx context.Context, q Query) ([]Count, error) {
	rows, err := s.conn.Query(ctx, q.SQL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	var out []Count
	for rows.Next() {
		var c Count
		if err := rows.Scan(&c.Key, &c.N); err != nil {
			return nil, fmt.Errorf("%s: %w", q.Name, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Totals returns the consumed events (derived ones not counted) and the
// dead letters.
func (s *Store) Totals(ctx context.Context) (events, deadLetters uint64, err error) {
	var derived uint64
	if err = s.conn.QueryRow(ctx, qCountEvents.SQL).Scan(&events, &derived); err != nil {
		return
	}
	err = s.conn.QueryRow(ctx, qCountDeadLetters.SQL).Scan(&deadLetters)
	return
}

// DeadLetters lists stored dead letters in coordinate order, optionally
// only those with code.
func (s *Store) DeadLetters(ctx context.Context, code string, limit int) ([]schemas.DeadLetter, error) {
	rows, err := s.conn.Query(ctx, qDeadLettersList.SQL, code, code, uint64(limit))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qDeadLettersList.Name, err)
	}
	defer rows.Close()
	var out []schemas.DeadLetter
	for rows.Next() {
		var d schemas.DeadLetter
		var partition uint32
		var offset uint64
		var index int32
		var code, raw, key string
		if err := rows.Scan(&d.Topic, &partition, &offset, &index, &code, &d.Detail, &raw, &key, &d.IngestedAt); err != nil {
			return nil, fmt.Errorf("%s: %w", qDeadLettersList.Name, err)
		}
		d.Partition, d.Offset, d.Index = int(partition), int64(offset), int(index)
		d.Code, d.Raw, d.Key = schemas.RejectCode(code), []byte(raw), []byte(key)
		out = append(out, d)
	}
	return out, rows.Err()
}
