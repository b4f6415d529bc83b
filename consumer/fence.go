package consumer

import (
	"context"
	"fmt"
)

// # Ownership checks before a write
//
// Kafka's group protocol does not stop a member that has lost a partition
// from working on it until the member notices (its next heartbeat or
// commit): when a group coordinator dies, the new coordinator can hand a
// partition to another member while the old owner still holds it. Both
// then read the partition's resume point and insert the same offsets
// (TestCluster's broker scenario: two members wrote partitions 0 and 1 for
// 2.5 s, 420 events stored twice).
//
// So a batch's context carries a check that the member still belongs to
// the generation that assigned the partition: a commit of the batch's first
// offset (what is below it is done), which the coordinator refuses from a
// member of an older generation. The handler runs it right before each
// insert that the resume point counts (events, dead letters), so an
// expelled member stops writing within one commit's round trip of the new
// generation, instead of at its next heartbeat.

type ownershipKey struct{}

// WithOwnershipCheck returns ctx carrying check (the consumer group sets it
// on each batch; tests set their own).
func WithOwnershipCheck(ctx context.Context, check func() error) context.Context {
	return context.WithValue(ctx, ownershipKey{}, check)
}

// CheckOwnership runs the ownership check ctx carries (none: nil). An
// error means the write must not happen now: the member may have lost the
// partition, or the coordinator cannot say.
func CheckOwnership(ctx context.Context) error {
	check, _ := ctx.Value(ownershipKey{}).(func() error)
	if check == nil {
		return nil
	}
	if err := check(); err != nil {
		return fmt.Errorf("the consumer group could not confirm this member still owns the partition (a commit of the batch's first offset failed): %w", err)
	}
	return nil
}
