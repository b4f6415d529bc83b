// Package pipeline is the sink group's work on a batch of Kafka messages:
// decode (schemas), enrich (enrich), and hand the results to a Sink and a
// dead-letter Publisher in an order that makes the events table exact.
//
// # Guarantees
//
// Every element of every message handed to Handle ends up exactly once in the
// Sink's events or exactly once in its dead letters (and at least once on the
// dead-letter Publisher), provided the Sink keeps the promises of its
// interface: each Write* call is atomic, and HighWater reports the highest
// offset each table holds for a partition. Handle writes, per partition and
// in offset order, three independent chains concurrently:
//
//   - dead letters to the Publisher (at least once: re-published after a
//     failure until the table holds them), then to the Sink, skipping
//     offsets at or below the dead-letters mark;
//   - suppression changes to the Sink, then to the change log
//     (suppression.Writer, the one write-then-publish rule; both
//     idempotent: a repeat changes nothing);
//   - the recipient history the soft-bounce policy reads (a repeat is
//     harmless to the policy);
//
// and only when all three hold, the events, skipping offsets at or below
// the events mark. So everything at or below the events mark is done, and
// a resumed partition starts after it.
//
// An event dated more than Config.MaxFutureSkew after its message (the
// earlier of the Kafka record's time and the clock) is a dead letter with
// code future_timestamp: list order is by event time, so such an event
// would outlive every delete made before its date. The record's time keeps
// the decision the same when a batch is handled again.
//
// Beside a processed event to a recipient already on a list, Handle adds a
// derived dropped event (Row.Derived) with SendGrid's reason; its identity is
// the source's with DerivedIndexBit set in the index, so it is exactly once
// too. The decision is as of the event's position: the index learns the
// batch's list changes (each with its event's position) before the drops
// are derived, and a drop counts the changes of earlier events of its
// partition only, so it does not depend on batching or on a batch handled
// again. Decoding (Decoders, one decoder per partition) and the derived-drop
// rule (DerivedDrop) are the step both consumer groups run: the webhook
// group's handler (sinks/webhook) calls them too, so both groups see the
// same events and the same drops. Repeated soft bounces can put a recipient on the bounce list
// (SoftBouncePolicy).
//
// The caller commits the batch's offsets only after Handle returns nil. After
// any failure, and when a partition is (re)assigned, the marks are read again
// from the Sink, so rows a failed or killed attempt did write are skipped.
// A Handler is used by one goroutine per partition; it is safe for that.
//
// # Re-routing
//
// A worker holds the suppression slices of its partitions only
// (SliceHolder). An event that reads or changes a recipient's lists (a
// processed event, which may get a derived drop, and the events that put
// a recipient on a list or take it off: NeedsSlice) but that a producer
// put in another partition q than its slice p (consumer.PartitionOf)
// would make q's worker load slice p too. Instead the sink group copies
// its message to partition p of the routed topic (consumer.RoutedTopic)
// and stores nothing for it from q; both groups consume the routed topic
// too (the same-numbered partitions of both topics go to one member), and
// the holder of routed partition p decodes the copy as the source message
// (its coordinates and its latest accepted event time travel in headers,
// so the events, their ids and positions are the source's), keeps the
// events routed to p and handles them like its own. Every other event of
// the message stays where it is. The webhook group delivers a routed
// event in q (so delivery does not wait for this group, nor for
// ClickHouse) and derives its drop, and learns its list changes, from
// its copy.
//
// Stored rows: an event stored from its copy gets the copy's topic,
// partition and offset (its msg_index stays the source's), and the source
// partition and offset in Row.SourcePartition and Row.SourceOffset. So
// every (topic, partition) of the events table is still written by one
// consumer in offset order, which the resume points, stats marks and
// activity windows rely on. Its list changes and its derived drop are as
// of its source position (Router.Position): the same as in q.
//
// # Exactly once, without transactions
//
// Claim: each routed event ends up in the events table exactly once,
// across kill -9 of any worker at any moment, rebalances, retries and a
// router that sends copies more than once.
//
// (A) The router, handling a batch of q, produces the batch's copies
// (consumer.CopyWriter) before it writes anything that moves q's resume
// point, and the group commits q only after the batch is done. The
// CopyWriter sends a partition's copies in source order, each produce
// request (one record batch, appended whole or not at all) only after the
// previous one was acknowledged. Hence the prefix property: when a copy
// of source offset x of q sits at position y in routed partition p, every
// message x' < x of q with events routed to p has a copy before y. For x'
// in the same batch, or an earlier batch of the same run, its request was
// acknowledged before y's was sent (or it is earlier in the same request).
// For x' before the run's start, q's resume point was past x': either
// q's committed offset (committed after x's batch's copies were
// acknowledged) or q's events mark (written after its batch's copies were
// acknowledged, and read, after waiting for running inserts, before this
// run sent anything). A request whose answer was lost can land late, but
// only after its own predecessors, so it keeps the property.
//
// (B) The consumer of routed partition p keeps per source partition q a
// mark M(q): the highest source offset of q among the rows it stored (read
// from the sink on assignment and after every failure, RoutedMarker; then
// kept up to date after each write, as the events mark is). It skips a
// copy whose source offset is at or below M(q) (and, as every partition
// does, a copy at or below p's own events mark). A copy is one message,
// and the rows of a message are written in one insert, so a copy is stored
// whole or not at all.
//
// At most once: once a copy of x is stored, M(q) >= x, and every later
// copy of x is skipped. At least once: a copy of x is skipped only when
// M(q) >= x, i.e. a copy of some x2 >= x was stored; if x2 = x, x is
// stored; if x2 > x, by (A) a copy of x came before it in p, and p is
// handled in order, so that copy was stored or skipped; by induction on the
// position in p, skipped only when x was stored. Nothing is lost: a copy
// is only ever skipped for a stored one, and every copy stays in p until
// handled (p's offsets are committed after its batches are stored).
//
// Dead letters stay with the source: the router's decode dead-letters
// what is bad in q; the copy's decode uses the same coordinates, bytes
// and latest event time, so it yields the same events, and its
// rejections are ignored. A message in the routed topic without the
// copy's headers (not written by bouncer) is skipped and logged.
//
// Webhooks deliver routed events at least once, from the source
// partition, and their derived drops at least once, from their copies: a
// copy sent twice may give its drops twice, with the same event ids and
// reasons (decided as of the source position).
package pipeline

import (
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Row is one decoded, enriched event ready for the events table.
type Row struct {
	schemas.Event
	// Provider is the recipient's mailbox provider ("" when unknown).
	Provider string
	// Bounce is set for bounce and deferred events.
	Bounce *enrich.Result
	// Agent and Place are what the user agent and the ip of an open or a
	// click say (zero for other events, or without Config.Agents, Geo).
	Agent enrich.UserAgent
	Place enrich.Place
	// Derived marks events bouncer made itself (for example a dropped event
	// for a suppressed recipient) rather than consumed.
	Derived bool
	// SourceTopic, SourcePartition and SourceOffset are, for an event
	// stored from its routed copy (whose coordinates the Event's Topic,
	// Partition and Offset then are), the message it was copied from
	// (route.go); "" and 0 otherwise.
	SourceTopic     string
	SourcePartition int
	SourceOffset    int64
}

// Marks are the highest offsets of one partition already held by the sink,
// per table; -1 when the table holds none.
type Marks struct {
	Events      int64
	DeadLetters int64
}

// Sink stores the pipeline's output. Each Write call must be atomic (all
// rows or none) and rows of one partition arrive in offset order.
type Sink interface {
	HighWater(ctx context.Context, topic string, partition int) (Marks, error)
	WriteEvents(ctx context.Context, rows []Row) error
	WriteDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error
	WriteSuppressions(ctx context.Context, rows []suppression.Change) error
}

// writerKey is the context key of WithWriter.
type writerKey struct{}

// Writer names the Kafka partition whose batch a sink write belongs to.
type Writer struct {
	Topic     string
	Partition int
}

// WithWriter returns ctx naming the partition whose batch the Handler is
// writing: a sink that merges the writes of several partitions
// (sinks/clickhouse's group commits) learns from it which partitions are
// already waiting in one of its merges, and so need not be waited for in
// another (a partition writes its list changes and history before its
// events, never both at once).
func WithWriter(ctx context.Context, topic string, partition int) context.Context {
	return context.WithValue(ctx, writerKey{}, Writer{topic, partition})
}

// WriterOf is the partition WithWriter put in ctx; false when there is
// none (an API call).
func WriterOf(ctx context.Context) (Writer, bool) {
	w, ok := ctx.Value(writerKey{}).(Writer)
	return w, ok
}

// Publisher sends dead letters to the dead-letter topic, at least once.
type Publisher interface {
	PublishDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error
}

var _ Publisher = (*consumer.DeadLetterWriter)(nil)

// Suppressions is the worker's view of the lists (suppression.Index).
type Suppressions interface {
	DropReasoner
	// Apply learns one of this worker's own list changes.
	Apply(c suppression.Change)
}

var _ Suppressions = (*suppression.Index)(nil)

// SliceHolder is Suppressions that hold only some recipients' lists: the
// slice of each change-log partition a caller holds (consumer.Slices). The
// handlers hold the slice of each partition they are assigned (on
// Assigned, so its first batch waits until it is loaded) and, before
// deciding a batch, the slices of the batch's recipients (the same one
// when the producer partitioned by consumer.PartitionOf; others for the
// events it did not), and release them when the partition is revoked.
type SliceHolder interface {
	Suppressions
	// PartitionOf is the change-log partition of a recipient's slice;
	// Partitions is how many there are.
	PartitionOf(account, emailNorm string) int
	Partitions() int
	// Hold returns once owner holds the slices of parts, each holding
	// every change announced before owner first asked for it.
	Hold(ctx context.Context, owner any, parts []int) error
	// Release lets go of every slice owner holds.
	Release(owner any)
}

var _ SliceHolder = (*consumer.Slices)(nil)

// SliceOwner is the owner a handler holds slices as for one partition.
type SliceOwner struct {
	Handler   any
	Topic     string
	Partition int
}

// OwnPartition is the partition the owner is (consumer.PartitionOwner).
func (o SliceOwner) OwnPartition() int { return o.Partition }

var _ consumer.PartitionOwner = SliceOwner{}

// HoldAssigned holds the slice of an assigned partition (when the
// change log has that partition: with equal partition counts, the slice
// of the recipients consumer.PartitionOf puts in it).
func HoldAssigned(ctx context.Context, h SliceHolder, owner SliceOwner) error {
	h.Release(owner) // a revocation the consumer did not report
	if owner.Partition >= h.Partitions() {
		return nil
	}
	return h.Hold(ctx, owner, []int{owner.Partition})
}

// HoldRecipients holds the slices of the recipients of changes and of the
// processed events of evs, before they are applied and decided; scratch is
// reused.
func HoldRecipients(ctx context.Context, h SliceHolder, owner SliceOwner, changes []suppression.Change, evs iter.Seq[*schemas.Event], scratch []int) ([]int, error) {
	parts := scratch[:0]
	for i := range changes {
		parts = append(parts, h.PartitionOf(changes[i].AccountID, changes[i].EmailNorm))
	}
	for ev := range evs {
		if ev.Event == schemas.EventProcessed {
			parts = append(parts, h.PartitionOf(ev.AccountID, ev.EmailNorm))
		}
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	if err := h.Hold(ctx, owner, parts); err != nil {
		return parts, fmt.Errorf("suppression slices of the batch's recipients: %w", err)
	}
	return parts, nil
}
