package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/reclassify"
	"github.com/bouncer-mail/bouncer/suppression"
)

var _ reclassify.Store = (*Store)(nil)

// EachBounce calls fn for each stored bounce of w (reclassify.Store). An
// error of fn stops the query.
func (s *Store) EachBounce(ctx context.Context, w reclassify.Window, fn func(*reclassify.Event) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	since, until := uint32(max(w.Since.Unix(), 0)), uint32(max(w.Until.Unix(), 0))
	rows, err := s.conn.Query(ctx, qReclassifyBounces.SQL, b2u(w.Account == ""), w.Account, since, until)
	if err != nil {
		return fmt.Errorf("%s: %w", qReclassifyBounces.Name, err)
	}
	defer rows.Close()
	var e reclassify.Event
	for rows.Next() {
		if err := scanBounce(rows, &e); err != nil {
			return fmt.Errorf("%s: %w", qReclassifyBounces.Name, err)
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", qReclassifyBounces.Name, err)
	}
	return nil
}

func scanBounce(rows driver.Rows, e *reclassify.Event) error {
	var part, index uint32
	var offset uint64
	var valid uint8
	c := &e.Class
	if err := rows.Scan(&e.Topic, &part, &offset, &index, &e.AccountID, &e.Email, &e.EmailNorm, &e.Type, &e.SGEventID,
		&e.Reason, &e.Response, &e.Status, &e.Timestamp, &valid, &c.BounceType, &c.Classification, &c.ReasonCode, &c.Rule, &c.DecidedBy, &e.Key); err != nil {
		return err
	}
	e.Partition, e.Offset, e.Index, e.AddressValid = int32(part), int64(offset), int32(index), valid == 1
	return nil
}

// AddressBounces returns every stored bounce of some addresses of one
// account (reclassify.Store).
func (s *Store) AddressBounces(ctx context.Context, account string, emails []string) ([]reclassify.Event, error) {
	rows, err := s.conn.Query(ctx, qReclassifyAddressBounces.SQL, account, emails)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qReclassifyAddressBounces.Name, err)
	}
	defer rows.Close()
	var out []reclassify.Event
	for rows.Next() {
		var e reclassify.Event
		if err := scanBounce(rows, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", qReclassifyAddressBounces.Name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ListRows returns the stored changes of some addresses' bounces, blocks
// and invalid_emails entries (reclassify.Store).
func (s *Store) ListRows(ctx context.Context, account string, emails []string) ([]reclassify.ListRow, error) {
	rows, err := s.conn.Query(ctx, qReclassifyListRows.SQL, account, emails)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qReclassifyListRows.Name, err)
	}
	defer rows.Close()
	var out []reclassify.ListRow
	for rows.Next() {
		var r reclassify.ListRow
		var deleted uint8
		if err := rows.Scan(&r.List, &r.EmailNorm, &r.Version, &deleted, &r.Source); err != nil {
			return nil, fmt.Errorf("%s: %w", qReclassifyListRows.Name, err)
		}
		r.Deleted = deleted == 1
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReclassifyWait bounds the wait for the mutation that stores new
// classifications (StoreClasses).
var ReclassifyWait = 5 * time.Minute

// StoreClasses replaces the classification of the changed events with one
// ALTER TABLE events UPDATE (on a cluster ON CLUSTER on the local tables)
// and waits until every replica finished it. Like an erasure, it marks the
// stats rollups of the events' days before the mutation (only a build
// started after the longest wait covers them) and again after it.
func (s *Store) StoreClasses(ctx context.Context, changes []reclassify.Change) error {
	if len(changes) == 0 {
		return nil
	}
	days := map[string][]uint32{}
	seen := map[string]map[uint32]bool{}
	for _, c := range changes {
		a, d := c.Event.AccountID, uint32(max(c.Event.Timestamp, 0)/86400)
		if seen[a] == nil {
			seen[a] = map[uint32]bool{}
		}
		if !seen[a][d] {
			seen[a][d] = true
			days[a] = append(days[a], d)
		}
	}
	accounts := make([]string, 0, len(days))
	for a := range days {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	mark := func(wait time.Duration) error {
		for _, a := range accounts {
			if err := s.markErasure(ctx, a, days[a], wait); err != nil {
				return fmt.Errorf("reclassify: mark the stats rollups: %w", err)
			}
		}
		return nil
	}
	if err := mark(2 * ReclassifyWait); err != nil {
		return err
	}
	ids := make([]uint64, len(changes))
	var cols [5]struct {
		values []string
		index  map[string]uint32
		at     []uint32
	}
	for k := range cols {
		cols[k].index = map[string]uint32{}
		cols[k].at = make([]uint32, len(changes))
	}
	for i, c := range changes {
		ids[i] = c.Event.Key
		for k, v := range [5]string{c.New.BounceType, c.New.Classification, c.New.ReasonCode, c.New.Rule, c.New.DecidedBy} {
			col := &cols[k]
			n, ok := col.index[v]
			if !ok {
				col.values = append(col.values, v)
				n = uint32(len(col.values))
				col.index[v] = n
			}
			col.at[i] = n
		}
	}
	var args []any
	for k := range cols {
		args = append(args, cols[k].values, ids, cols[k].at)
	}
	args = append(args, ids)
	if err := s.conn.Exec(ctx, s.mutationSQL(qReclassifyUpdate, "events"), args...); err != nil {
		return fmt.Errorf("%s: %w", qReclassifyUpdate.Name, err)
	}
	if err := s.waitMutations(ctx, "events", suppression.EraseOptions{Wait: ReclassifyWait, Poll: 200 * time.Millisecond}); err != nil {
		return errors.Join(errors.New("reclassify: the events' update did not finish (run again to finish the run)"), err)
	}
	return mark(0)
}
