package suppression

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Group is an unsubscribe group of an account (SendGrid's suppression
// group): recipients unsubscribe from one group (the unsubscribes list with
// that GroupID) without leaving the others.
type Group struct {
	ID          int64
	Name        string
	Description string
	IsDefault   bool
	// Unsubscribes is the number of addresses currently unsubscribed from
	// the group (filled by Groups).
	Unsubscribes uint64
	// Implicit is a group id that the account's unsubscribes use but that
	// was never created (a group_unsubscribe event with an asm_group_id of
	// SendGrid's, or an API add to an id that has no group): it has no
	// name or description until a PATCH gives it one.
	Implicit bool
}

// MaxGroups is SendGrid's limit of unsubscribe groups per account.
const MaxGroups = 200

// ErrNoGroup is returned for a group id the account has neither created
// nor used.
var ErrNoGroup = errors.New("no such unsubscribe group")

// GroupStore keeps unsubscribe groups (sinks/clickhouse implements it).
// Every method takes the account first and touches only its groups.
type GroupStore interface {
	// Groups returns the account's groups that exist (created, not
	// deleted) with their unsubscribe counts, and, as Implicit groups, the
	// ids of its current group unsubscribes that have no such group; by
	// id.
	Groups(ctx context.Context, account string) ([]Group, error)
	// CreateGroup stores a new group as of at with an id no group of the
	// account ever had (nor any of its unsubscribes), or with g.ID when it
	// is not 0 and no group holds it; it returns the group as stored.
	CreateGroup(ctx context.Context, account string, g Group, at time.Time) (Group, error)
	// UpdateGroup stores a new version of an existing group (ErrNoGroup
	// when there is none).
	UpdateGroup(ctx context.Context, account string, g Group, at time.Time) error
	// DeleteGroupRecord marks a group deleted (ErrNoGroup when there is
	// none); its unsubscribes are not touched.
	DeleteGroupRecord(ctx context.Context, account string, id int64, at time.Time) error
	// GroupSuppressions returns the account's current group unsubscribes
	// (every group), of one normalised address when emailNorm is not "",
	// newest first, paged.
	GroupSuppressions(ctx context.Context, account, emailNorm string, offset, limit uint64) ([]GroupEntry, error)
	// GroupMembers returns which of the normalised addresses are currently
	// unsubscribed from the group.
	GroupMembers(ctx context.Context, account string, group int64, emailNorms []string) ([]Entry, error)
}

// GroupEntry is one current group unsubscribe.
type GroupEntry struct {
	GroupID int64
	Entry
}

// groups returns the Service's store as a GroupStore.
func (s *Service) groups() (GroupStore, error) {
	gs, ok := s.store.(GroupStore)
	if !ok {
		return nil, errors.New("suppression: the store keeps no unsubscribe groups")
	}
	return gs, nil
}

// Groups lists the account's groups (GroupStore.Groups).
func (s *Service) Groups(ctx context.Context, account string) ([]Group, error) {
	gs, err := s.groups()
	if err != nil {
		return nil, err
	}
	return gs.Groups(ctx, account)
}

// CreateGroup stores a new group (GroupStore.CreateGroup).
func (s *Service) CreateGroup(ctx context.Context, account string, g Group, at time.Time) (Group, error) {
	gs, err := s.groups()
	if err != nil {
		return Group{}, err
	}
	return gs.CreateGroup(ctx, account, g, at)
}

// UpdateGroup stores a new version of a group (GroupStore.UpdateGroup).
func (s *Service) UpdateGroup(ctx context.Context, account string, g Group, at time.Time) error {
	gs, err := s.groups()
	if err != nil {
		return err
	}
	return gs.UpdateGroup(ctx, account, g, at)
}

// DeleteGroup deletes a group as SendGrid does: its unsubscribes are
// removed first (each removal written and announced on the change log, as
// DeleteAllSuppressions), so mail to those addresses in that group flows
// again, then the group's record is marked deleted. An implicit group (no
// record) loses its unsubscribes only. A failure part way is repaired by
// deleting again.
func (s *Service) DeleteGroup(ctx context.Context, account string, id int64, at time.Time) error {
	gs, err := s.groups()
	if err != nil {
		return err
	}
	if err := s.DeleteAllSuppressions(ctx, account, ListUnsubscribes, id, at); err != nil {
		return fmt.Errorf("delete the unsubscribes of group %d: %w", id, err)
	}
	if err := gs.DeleteGroupRecord(ctx, account, id, at); err != nil && !errors.Is(err, ErrNoGroup) {
		return err
	}
	return nil
}

// GroupSuppressions lists current group unsubscribes (GroupStore).
func (s *Service) GroupSuppressions(ctx context.Context, account, emailNorm string, offset, limit uint64) ([]GroupEntry, error) {
	gs, err := s.groups()
	if err != nil {
		return nil, err
	}
	return gs.GroupSuppressions(ctx, account, emailNorm, offset, limit)
}

// GroupMembers says which addresses are unsubscribed from a group
// (GroupStore).
func (s *Service) GroupMembers(ctx context.Context, account string, group int64, emailNorms []string) ([]Entry, error) {
	gs, err := s.groups()
	if err != nil {
		return nil, err
	}
	return gs.GroupMembers(ctx, account, group, emailNorms)
}
