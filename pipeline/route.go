package pipeline

import (
	"context"
	"errors"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

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
