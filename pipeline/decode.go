package pipeline

import (
	"crypto/sha256"
	"encoding/base64"
	"sync"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// The decode-and-derive step both consumer groups run on every message:
// the sink group's Handler here and the webhook group's handler
// (sinks/webhook). The groups stay independent (each commits its own
// offsets); the rules are written once.

// Decoders keeps one schemas.Decoder per partition, so each partition's
// goroutine decodes with its own scratch (a Decoder is not safe for
// concurrent use) and reuses it batch after batch. Safe for concurrent
// use by the goroutines of different partitions.
type Decoders struct {
	maxBytes int
	mu       sync.Mutex
	m        map[partKey]*schemas.Decoder
}

// NewDecoders returns decoders limited to maxMessageBytes per message (0:
// the decoder's default).
func NewDecoders(maxMessageBytes int) *Decoders {
	return &Decoders{maxBytes: maxMessageBytes, m: map[partKey]*schemas.Decoder{}}
}

// For returns the decoder of a partition, for a batch of its messages
// (the caller is the partition's one goroutine).
func (d *Decoders) For(topic string, partition int) *schemas.Decoder {
	k := partKey{topic, partition}
	d.mu.Lock()
	defer d.mu.Unlock()
	dec := d.m[k]
	if dec == nil {
		dec = &schemas.Decoder{MaxMessageBytes: d.maxBytes}
		d.m[k] = dec
	}
	return dec
}

// Decode decodes msg with dec (its partition's, from For) into dst
// (reused), and returns the events and the rejected parts. maxTimestamp,
// when not 0, is the latest event time accepted
// (schemas.Decoder.MaxTimestamp). The events' strings share one allocation
// per message and stay valid after the next call.
func Decode(dec *schemas.Decoder, msg *consumer.Message, maxTimestamp int64, dst []schemas.Event) ([]schemas.Event, []schemas.Rejection) {
	dec.MaxTimestamp = maxTimestamp
	return dec.Decode(msg.Value, schemas.Coordinates{Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset}, dst)
}

// DropReasoner says why a message to an address would be dropped
// (suppression.Index).
type DropReasoner interface {
	// DropReasonAt is SendGrid's dropped reason for a message sent at time
	// at (unix seconds) to the address, or "" when it may be sent to, as of
	// the event at asOf: the list changes of that event and of later events
	// in its partition are not counted.
	DropReasonAt(account, emailNorm string, group int64, at int64, asOf suppression.Position) string
}

// DerivedIndexBit marks the msg_index of a derived event: it sits beside
// the event it was derived from (same coordinates) with this bit set, so
// its identity is unique and stable.
const DerivedIndexBit = 1 << 31

// DerivedDrop is the derived-drop rule: for a processed event to a
// recipient on a list that drops (lists.DropReason), the dropped event
// SendGrid would have sent, beside it: the same fields, event "dropped",
// SendGrid's reason, DerivedIndexBit set in the index and a stable
// sg_event_id (DerivedEventID). ok is false for any other event.
func DerivedDrop(ev *schemas.Event, lists DropReasoner) (drop schemas.Event, ok bool) {
	return derivedDropAt(ev, lists, eventPosition(ev))
}

// derivedDropAt is DerivedDrop as of the event at asOf (a routed event's
// source position: Router.Position).
func derivedDropAt(ev *schemas.Event, lists DropReasoner, asOf suppression.Position) (drop schemas.Event, ok bool) {
	if lists == nil || ev.Event != schemas.EventProcessed {
		return schemas.Event{}, false
	}
	reason := lists.DropReasonAt(ev.AccountID, ev.EmailNorm, ev.ASMGroupID, ev.Timestamp, asOf)
	if reason == "" {
		return schemas.Event{}, false
	}
	d := *ev
	d.Event = schemas.EventDropped
	d.Reason = reason
	d.Index |= DerivedIndexBit
	d.SGEventID = DerivedEventID("dropped", ev.SGEventID)
	d.EventIDDerived = true
	d.Categories = ev.Categories
	return d, true
}

// DerivedEventID is the stable sg_event_id of an event derived from the
// event with id from: the same input always gives the same id.
func DerivedEventID(kind, from string) string {
	sum := sha256.Sum256([]byte("bouncer/derived/v1\x00" + kind + "\x00" + from))
	return "bnc1" + kind[:1] + "_" + base64.RawURLEncoding.EncodeToString(sum[:16])
}
