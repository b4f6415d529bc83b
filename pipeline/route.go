package pipeline

import (
	"context"
	"errors"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

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
// event from its copy only: it skips it in q.
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
// M(q) >= x, i.e. a copy of some x'' >= x was stored; if x'' = x, x is
// stored; if x'' > x, by (A) a copy of x came before it in p, and p is
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
// Webhooks deliver routed events at least once, from their copies: a
// copy sent twice may be delivered twice, with the same event ids, and
// the same derived drops (decided as of the source position).

// NeedsSlice reports whether handling ev reads or changes its
// recipient's suppression lists: a processed event (its derived drop), a
// bounce (a hard bounce, a block, an invalid address, the soft-bounce
// policy), a spam report, an unsubscribe or a group (re)subscribe. Only
// these events are re-routed.
func NeedsSlice(ev *schemas.Event) bool {
	switch ev.Event {
	case schemas.EventProcessed, schemas.EventBounce, schemas.EventSpamReport, schemas.EventUnsubscribe,
		schemas.EventGroupUnsubscribe, schemas.EventGroupResubscribe:
		return true
	}
	return false
}

// Router says which events are re-routed and reads routed copies; the
// sink group and the webhook group use the same one.
type Router struct {
	// Topic is the event topic; its copies go to consumer.RoutedTopic(Topic).
	Topic string
	// Slices tells the slice of a recipient (its Partitions are the
	// routed topic's).
	Slices SliceHolder
}

// NewRouter returns the Router of topic's events over slices.
func NewRouter(topic string, slices SliceHolder) (*Router, error) {
	if topic == "" || slices == nil {
		return nil, errors.New("pipeline: a router needs the event topic and the suppression slices")
	}
	return &Router{Topic: topic, Slices: slices}, nil
}

// RoutedTopic is the topic of the copies.
func (r *Router) RoutedTopic() string { return consumer.RoutedTopic(r.Topic) }

// Destination is the routed partition of ev, read from partition of the
// event topic, or -1 when ev is handled where it is (it needs no slice, or
// its slice is partition's).
func (r *Router) Destination(ev *schemas.Event, partition int) int {
	if !NeedsSlice(ev) {
		return -1
	}
	if p := r.Slices.PartitionOf(ev.AccountID, ev.EmailNorm); p != partition {
		return p
	}
	return -1
}

// DecodeCopy decodes msg, read from partition p of the routed topic, as
// the source message it copies (the same events, with the source's
// coordinates), and appends to dst those the router sent to p. ok is false
// when msg is not a routed copy.
func (r *Router) DecodeCopy(dec *schemas.Decoder, msg *consumer.Message, p int, dst []schemas.Event) (_ []schemas.Event, src consumer.RoutedSource, ok bool) {
	src, ok = consumer.SourceOf(msg)
	if !ok {
		return dst, src, false
	}
	n0 := len(dst)
	dec.MaxTimestamp = src.MaxTimestamp
	dst, _ = dec.Decode(msg.Value, schemas.Coordinates{Topic: r.Topic, Partition: src.Partition, Offset: src.Offset}, dst)
	keep := dst[:n0]
	for i := n0; i < len(dst); i++ {
		if r.Destination(&dst[i], src.Partition) == p {
			keep = append(keep, dst[i])
		}
	}
	clear(dst[len(keep):])
	return keep, src, true
}

// Position is where a row's event sits in the event stream: its source
// position for a row stored from its routed copy.
func (r *Router) Position(row *Row) suppression.Position {
	return rowPosition(row)
}

// rowPosition is Router.Position (rows carry their source).
func rowPosition(row *Row) suppression.Position {
	if row.SourceTopic != "" {
		return suppression.Position{Topic: row.SourceTopic, Partition: row.SourcePartition, Offset: row.SourceOffset, Index: row.Index}
	}
	return eventPosition(&row.Event)
}

// CopyWriter produces routed copies (consumer.CopyWriter: in order, each
// request after the previous one was acknowledged).
type CopyWriter interface {
	WriteCopies(ctx context.Context, copies []consumer.Copy) error
}

var _ CopyWriter = (*consumer.CopyWriter)(nil)

// RoutedMarker is a Sink that reads the marks of a routed partition: per
// source partition, the highest source offset its rows hold (see the
// proof above).
type RoutedMarker interface {
	RoutedMarks(ctx context.Context, topic string, partition int) (map[int]int64, error)
}
