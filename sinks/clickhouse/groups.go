package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/suppression"
)

var _ suppression.GroupStore = (*Store)(nil)

// groupRecheck is how long a group create waits before it checks a second
// time that it owns its id.
const groupRecheck = 100 * time.Millisecond

// GroupLog is a log that puts one account's entries in one total order
// (the webhook claims topic, claims.Log, serves groups too under a scope of
// their own).
type GroupLog interface {
	Append(ctx context.Context, c claims.Claim) (claims.Claim, error)
	Read(ctx context.Context, scope, account string) ([]claims.Claim, error)
}

// UseGroupLog makes group creates take their ids in the order of l, so
// that creates of several API processes at once never share an id, however
// slow their inserts are. Without it, creates of other processes are told
// apart by the store alone (a wall-clock race, see CreateGroup), which is
// safe only while one process creates groups.
func (s *Store) UseGroupLog(l GroupLog) { s.groupLog = l }

// groupOp marks a group create in the claims log.
const groupOp claims.Op = "group_create"

// groupClaim is what a group create puts in the log: the highest id the
// account had used when the create began (Floor), or the id asked for.
type groupClaim struct {
	Floor int64 `json:"floor"`
	Fixed int64 `json:"fixed,omitempty"`
}

// decideGroupIDs replays one account's group creates in log order: a create
// for a fixed id gets it unless an earlier create took it; any other gets
// one more than the highest of its floor and every id taken before it. It
// is a pure function of the log, so every process decides the same ids.
// Creates it cannot read get no id.
func decideGroupIDs(log []claims.Claim) map[string]int64 {
	ids := map[string]int64{}
	taken := map[int64]bool{}
	var high int64
	for _, c := range log {
		if c.Op != groupOp {
			continue
		}
		var gc groupClaim
		if json.Unmarshal(c.Row, &gc) != nil {
			continue
		}
		id := max(gc.Floor, high) + 1
		if gc.Fixed != 0 {
			if taken[gc.Fixed] {
				continue
			}
			id = gc.Fixed
		}
		taken[id] = true
		high = max(high, id)
		ids[c.ID] = id
	}
	return ids
}

// createOrdered is CreateGroup through the group log.
func (s *Store) createOrdered(ctx context.Context, account string, g suppression.Group, at time.Time) (suppression.Group, error) {
	gc := groupClaim{Fixed: g.ID}
	if g.ID != 0 {
		rec, ok, err := s.record(ctx, account, g.ID)
		if err != nil {
			return g, err
		}
		if ok && !rec.deleted {
			return g, fmt.Errorf("group %d already exists", g.ID)
		}
		if ok {
			g.Implicit, g.Unsubscribes = false, 0
			return g, s.writeGroup(ctx, account, g, rec.nonce, rec.created, false, next(rec.version, at))
		}
	} else if err := s.conn.QueryRow(ctx, qGroupsMaxID.SQL, account, account).Scan(&gc.Floor); err != nil {
		return g, fmt.Errorf("%s: %w", qGroupsMaxID.Name, err)
	}
	nonce, wall, err := groupNonce()
	if err != nil {
		return g, err
	}
	row, err := json.Marshal(gc)
	if err != nil {
		return g, err
	}
	scope := s.cfg.Database + "/unsubscribe_groups"
	if _, err := s.groupLog.Append(ctx, claims.Claim{Op: groupOp, Scope: scope, Account: account, ID: nonce, Row: row}); err != nil {
		return g, fmt.Errorf("create group: %w", err)
	}
	log, err := s.groupLog.Read(ctx, scope, account)
	if err != nil {
		return g, fmt.Errorf("create group: %w", err)
	}
	id, ok := decideGroupIDs(log)[nonce]
	if !ok {
		return g, fmt.Errorf("group %d already exists", g.ID)
	}
	g.ID, g.Implicit, g.Unsubscribes = id, false, 0
	return g, s.writeGroup(ctx, account, g, nonce, uint64(wall), false, next(0, at))
}

// groupNonce is a create's identity: the wall clock (an ordering token for
// the store-only race, not the change's time), then random bytes.
func groupNonce() (string, int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", 0, err
	}
	wall := time.Now().UnixNano()
	return fmt.Sprintf("%019d-%s", wall, hex.EncodeToString(b[:])), wall, nil
}

// groupRecord is the newest state of one group id's owning creation.
type groupRecord struct {
	suppression.Group
	nonce   string
	created uint64
	deleted bool
	version uint64
}

func (s *Store) groupRecords(ctx context.Context, account string) ([]groupRecord, error) {
	rows, err := s.conn.Query(ctx, qGroupsList.SQL, account, account)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qGroupsList.Name, err)
	}
	defer rows.Close()
	var out []groupRecord
	for rows.Next() {
		var r groupRecord
		var def, del uint8
		if err := rows.Scan(&r.ID, &r.nonce, &r.created, &r.Name, &r.Description, &def, &del, &r.version); err != nil {
			return nil, fmt.Errorf("%s: %w", qGroupsList.Name, err)
		}
		r.IsDefault, r.deleted = def == 1, del == 1
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) record(ctx context.Context, account string, id int64) (groupRecord, bool, error) {
	recs, err := s.groupRecords(ctx, account)
	if err != nil {
		return groupRecord{}, false, err
	}
	for _, r := range recs {
		if r.ID == id {
			return r, true, nil
		}
	}
	return groupRecord{}, false, nil
}

// Groups returns the account's groups that exist, with their unsubscribe
// counts, and the implicit ones (group ids of current unsubscribes with no
// existing group), by id.
func (s *Store) Groups(ctx context.Context, account string) ([]suppression.Group, error) {
	recs, err := s.groupRecords(ctx, account)
	if err != nil {
		return nil, err
	}
	counts := map[int64]uint64{}
	rows, err := s.conn.Query(ctx, qGroupCounts.SQL, account)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qGroupCounts.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", qGroupCounts.Name, err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []suppression.Group
	for _, r := range recs {
		if r.deleted {
			continue
		}
		g := r.Group
		g.Unsubscribes = counts[g.ID]
		delete(counts, g.ID)
		out = append(out, g)
	}
	for id, n := range counts {
		out = append(out, suppression.Group{ID: id, Unsubscribes: n, Implicit: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// CreateGroup stores a new group as of at: with g.ID when it is not 0 (an
// implicit group being named; it must not be held by an existing group),
// else with the account's highest id ever used plus one. With a group log
// (UseGroupLog; bouncer api always sets one) the log's order decides every
// id (createOrdered), so creates of several processes never share one.
// Without a log, two creations of one id at once: the one stamped first
// (by the wall clock of its process) owns it, the other tries the next id
// (or, for a given id, fails). Each create looks twice, 100ms apart, so a
// create of another process that took longer than that to land after its
// stamp is the only one that can be answered an id it does not own.
func (s *Store) CreateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) (suppression.Group, error) {
	if s.groupLog != nil {
		return s.createOrdered(ctx, account, g, at)
	}
	s.groupMu.Lock()
	defer s.groupMu.Unlock()
	fixed := g.ID != 0
	for attempt := 0; attempt < 10; attempt++ {
		if !fixed {
			// The loser of a race finds the winner's id here and moves
			// past it.
			var maxID int64
			if err := s.conn.QueryRow(ctx, qGroupsMaxID.SQL, account, account).Scan(&maxID); err != nil {
				return g, fmt.Errorf("%s: %w", qGroupsMaxID.Name, err)
			}
			g.ID = maxID + 1
		} else if rec, ok, err := s.record(ctx, account, g.ID); err != nil {
			return g, err
		} else if ok && !rec.deleted {
			return g, fmt.Errorf("group %d already exists", g.ID)
		} else if ok {
			// A deleted group's id in use again: the group comes back
			// under its first creation.
			g.Implicit, g.Unsubscribes = false, 0
			return g, s.writeGroup(ctx, account, g, rec.nonce, rec.created, false, next(rec.version, at))
		}
		// The nonce orders creates of one id: the wall clock when this
		// one is written (an ordering token, not the change's time), then
		// random bytes. The smallest owns the id.
		nonce, wall, err := groupNonce()
		if err != nil {
			return g, err
		}
		if err := s.writeGroup(ctx, account, g, nonce, uint64(wall), false, next(0, at)); err != nil {
			return g, err
		}
		// Checked twice: a create of another process stamped a moment
		// earlier may land after the first look.
		won := true
		for look := 0; look < 2 && won; look++ {
			if look == 1 {
				select {
				case <-time.After(groupRecheck):
				case <-ctx.Done():
					return g, ctx.Err()
				}
			}
			var owner string
			if err := s.conn.QueryRow(ctx, qGroupOwner.SQL, account, g.ID).Scan(&owner); err != nil {
				return g, fmt.Errorf("%s: %w", qGroupOwner.Name, err)
			}
			won = owner == nonce
		}
		if won {
			g.Implicit, g.Unsubscribes = false, 0
			return g, nil
		}
		if fixed {
			break
		}
	}
	return g, fmt.Errorf("create group: another process took id %d at the same moment; try again", g.ID)
}

// UpdateGroup stores a new version of an existing group.
func (s *Store) UpdateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) error {
	rec, ok, err := s.record(ctx, account, g.ID)
	if err != nil {
		return err
	}
	if !ok || rec.deleted {
		return fmt.Errorf("%w: %d", suppression.ErrNoGroup, g.ID)
	}
	return s.writeGroup(ctx, account, g, rec.nonce, rec.created, false, next(rec.version, at))
}

// DeleteGroupRecord marks an existing group deleted.
func (s *Store) DeleteGroupRecord(ctx context.Context, account string, id int64, at time.Time) error {
	rec, ok, err := s.record(ctx, account, id)
	if err != nil {
		return err
	}
	if !ok || rec.deleted {
		return fmt.Errorf("%w: %d", suppression.ErrNoGroup, id)
	}
	return s.writeGroup(ctx, account, rec.Group, rec.nonce, rec.created, true, next(rec.version, at))
}

// next is the version of a change at at to a group whose newest version is
// prev: at in unix nanoseconds, or prev + 1 when the clock has not passed
// it (a clock that stands still in tests, or one set back), so a change
// always wins over the state it was made from.
func next(prev uint64, at time.Time) uint64 {
	return max(uint64(at.UnixNano()), prev+1)
}

func (s *Store) writeGroup(ctx context.Context, account string, g suppression.Group, nonce string, created uint64, deleted bool, version uint64) error {
	if account == "" {
		return fmt.Errorf("%s: account is empty", qInsertGroup.Name)
	}
	updated := time.Unix(0, int64(version)).UTC().Truncate(time.Second)
	return s.insert(ctx, qInsertGroup, func(b driver.Batch) error {
		return b.Append(account, g.ID, nonce, created, g.Name, g.Description, b2u(g.IsDefault), b2u(deleted), updated, version)
	})
}

// GroupSuppressions returns current group unsubscribes of every group.
func (s *Store) GroupSuppressions(ctx context.Context, account, emailNorm string, offset, limit uint64) ([]suppression.GroupEntry, error) {
	rows, err := s.conn.Query(ctx, qGroupSuppressions.SQL, account, emailNorm, emailNorm, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qGroupSuppressions.Name, err)
	}
	defer rows.Close()
	var out []suppression.GroupEntry
	for rows.Next() {
		var e suppression.GroupEntry
		var del uint8
		if err := rows.Scan(&e.GroupID, &e.EmailNorm, &e.Email, &e.Created, &del); err != nil {
			return nil, fmt.Errorf("%s: %w", qGroupSuppressions.Name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// GroupMembers returns which of the addresses are unsubscribed from group.
func (s *Store) GroupMembers(ctx context.Context, account string, group int64, emailNorms []string) ([]suppression.Entry, error) {
	if len(emailNorms) == 0 {
		return nil, nil
	}
	rows, err := s.conn.Query(ctx, qGroupMembers.SQL, account, group, emailNorms)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qGroupMembers.Name, err)
	}
	defer rows.Close()
	var out []suppression.Entry
	for rows.Next() {
		var e suppression.Entry
		var del uint8
		if err := rows.Scan(&e.EmailNorm, &e.Email, &e.Created, &del); err != nil {
			return nil, fmt.Errorf("%s: %w", qGroupMembers.Name, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
