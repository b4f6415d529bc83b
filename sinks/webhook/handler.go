package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/subscription"
)

// ErrNotReady is returned while the subscriptions were never read: no
// event is matched against an empty set.
var ErrNotReady = errors.New("webhook: subscriptions not loaded yet")

// EventHandler returns the webhook group's handler: it matches the events
// of a consumed batch to subscriptions and returns when every event is
// delivered or parked in Kafka, so the group may commit. maxMessageBytes
// is the decoder's limit (0: the default).
func (d *Dispatcher) EventHandler(maxMessageBytes int) consumer.BatchHandler {
	return &eventHandler{d: d, decoders: pipeline.NewDecoders(maxMessageBytes)}
}

// eventHandler decodes with the sink group's decoders and derives drops
// with its rule (pipeline.Decoders, pipeline.DerivedDrop); only what it
// does with the events is its own.
type eventHandler struct {
	d        *Dispatcher
	decoders *pipeline.Decoders
}

// Assigned: the webhook group keeps no marks; it resumes at the commit.
func (h *eventHandler) Assigned(context.Context, string, int) (int64, error) { return 0, nil }

// Handle delivers msgs (at least once). See the package doc.
func (h *eventHandler) Handle(ctx context.Context, topic string, partition int, msgs []consumer.Message) error {
	d := h.d
	snap := d.snap.Load()
	if snap == nil {
		return ErrNotReady
	}
	dec := h.decoders.For(topic, partition)
	t := newTracker()
	byLane := map[*lane][]pendingEvent{}
	var evs []schemas.Event
	for i := range msgs {
		msg := &msgs[i]
		var rejs []schemas.Rejection
		evs, rejs = pipeline.Decode(dec, msg, 0, evs[:0])
		for _, r := range rejs {
			d.m.badInput.WithLabelValues(string(r.Code)).Inc()
		}
		var elems [][]byte
		for k := range evs {
			ev := &evs[k]
			eps := snap.byAccount[ev.AccountID]
			if len(eps) == 0 {
				continue
			}
			if elems == nil {
				elems = splitElements(msg.Value)
			}
			if ev.Index >= len(elems) {
				return fmt.Errorf("webhook: %s/%d@%d: element %d not found", msg.Topic, msg.Partition, msg.Offset, ev.Index)
			}
			var raw json.RawMessage
			for _, ep := range eps {
				if !ep.Wants(string(ev.Event)) {
					continue
				}
				if raw == nil {
					raw = eventJSON(elems[ev.Index], ev)
				}
				l := d.lane(ep)
				byLane[l] = append(byLane[l], pendingEvent{raw: raw, ts: ev.Timestamp, t: t})
			}
			if d.cfg.Drops != nil && ev.Event == schemas.EventProcessed {
				h.derivedDrop(eps, elems[ev.Index], ev, t, byLane)
			}
		}
	}
	var overflow []*job
	for l, pe := range byLane {
		t.add(len(pe))
		if !l.add(pe) {
			overflow = append(overflow, l.overflowJobs(pe)...)
		}
	}
	clear(byLane)
	for _, j := range overflow {
		j.b.Tier, j.b.Due = 0, d.now().Add(d.cfg.Schedule.Delays[0])
		d.park(j)
	}
	t.finish(1, nil)
	return t.wait(ctx)
}

// overflowJobs makes batches of events a full lane cannot take; they go
// straight to the first retry tier.
func (l *lane) overflowJobs(pe []pendingEvent) []*job {
	var out []*job
	now := l.d.now()
	for start := 0; start < len(pe); start += l.d.cfg.MaxBatchEvents {
		part := pe[start:min(start+l.d.cfg.MaxBatchEvents, len(pe))]
		b := &Batch{WebhookID: NewWebhookID(), EndpointID: l.id, AccountID: l.account, Created: now,
			Events: make([]json.RawMessage, len(part)), EventTimes: make([]int64, len(part))}
		j := &job{b: b, queuedAt: now, fresh: true}
		for i, e := range part {
			b.Events[i], b.EventTimes[i] = e.raw, e.ts
			if k := len(j.waiters); k > 0 && j.waiters[k-1].t == e.t {
				j.waiters[k-1].n++
			} else {
				j.waiters = append(j.waiters, waiter{e.t, 1})
			}
		}
		out = append(out, j)
	}
	return out
}

// derivedDrop gives a processed event to a suppressed recipient its
// dropped event, by the sink group's rule (pipeline.DerivedDrop: same
// reason, same sg_event_id), when an endpoint of the account wants it.
func (h *eventHandler) derivedDrop(eps []*subscription.Webhook, elem []byte, ev *schemas.Event, t *tracker, byLane map[*lane][]pendingEvent) {
	var raw json.RawMessage
	for _, ep := range eps {
		if !ep.Wants(string(schemas.EventDropped)) {
			continue
		}
		if raw == nil {
			drop, ok := pipeline.DerivedDrop(ev, h.d.cfg.Drops)
			if !ok {
				return
			}
			if raw = droppedJSON(elem, &drop); raw == nil {
				return
			}
		}
		l := h.d.lane(ep)
		byLane[l] = append(byLane[l], pendingEvent{raw: raw, ts: ev.Timestamp, t: t})
	}
}

// Redeliver attempts parked batches again (the retry tiers' consumer
// calls it with batches that are due) and returns when each is delivered,
// parked again or given up.
func (d *Dispatcher) Redeliver(ctx context.Context, batches []*Batch) error {
	snap := d.snap.Load()
	if snap == nil {
		return ErrNotReady
	}
	t := newTracker()
	for _, b := range batches {
		if d.delivered(b.WebhookID) {
			continue // a parked copy of a batch delivered meanwhile
		}
		t.add(1)
		j := &job{b: b, waiters: []waiter{{t, 1}}}
		if !d.register(j, t) {
			continue // the same webhook-id is already on its way here
		}
		ep := snap.byID[b.EndpointID]
		if ep == nil {
			j.b.Reason = "endpoint deleted"
			d.park(j)
			continue
		}
		if ep.AccountID != b.AccountID {
			// Only a hand-made retry message gets here: never send one
			// account's events to another account's endpoint.
			j.b.Reason = "batch account does not own the endpoint"
			d.park(j)
			continue
		}
		l := d.lane(ep)
		if !l.addBatch(j) {
			l.parkUntried(j)
		}
	}
	t.finish(1, nil)
	return t.wait(ctx)
}

// splitElements returns the top-level elements of a JSON array, or the
// whole message (trimmed) when it is not an array. The decoder has
// already checked the syntax of every element it accepted.
func splitElements(msg []byte) [][]byte {
	msg = bytes.TrimSpace(msg)
	if len(msg) == 0 || msg[0] != '[' {
		return [][]byte{msg}
	}
	var out [][]byte
	depth, start := 0, -1
	inStr, esc := false, false
	for i := 1; i < len(msg); i++ {
		c := msg[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
			if start < 0 {
				start = i
			}
		case '{', '[':
			if start < 0 {
				start = i
			}
			depth++
		case '}', ']':
			if depth == 0 { // the array's own end
				if start >= 0 {
					out = append(out, bytes.TrimSpace(msg[start:i]))
				}
				return out
			}
			depth--
		case ',':
			if depth == 0 {
				out = append(out, bytes.TrimSpace(msg[start:i]))
				start = -1
			}
		case ' ', '\t', '\n', '\r':
		default:
			if start < 0 {
				start = i
			}
		}
	}
	return out
}

// eventJSON is the event object as sent, with the sg_event_id bouncer
// derived added when the producer sent none (receivers dedupe on it).
func eventJSON(elem []byte, ev *schemas.Event) json.RawMessage {
	if !ev.EventIDDerived {
		return elem
	}
	id, _ := json.Marshal(ev.SGEventID)
	out := make([]byte, 0, len(elem)+len(id)+16)
	out = append(out, `{"sg_event_id":`...)
	out = append(out, id...)
	rest := bytes.TrimSpace(elem[1:])
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// droppedJSON is the derived dropped event drop as sent: the processed
// event's object (elem) with drop's event, reason and sg_event_id.
func droppedJSON(elem []byte, drop *schemas.Event) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(elem, &m); err != nil {
		return nil
	}
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	m["event"] = str(string(drop.Event))
	m["reason"] = str(drop.Reason)
	m["sg_event_id"] = str(drop.SGEventID)
	delete(m, "response")
	out, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return out
}
