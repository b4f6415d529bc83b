package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// ErrNotReady is returned while the subscriptions were never read: no
// event is matched against an empty set.
var ErrNotReady = errors.New("webhook: subscriptions not loaded yet")

// EventHandler returns the webhook group's handler, a consumer.Stager: it
// matches the events of a consumed batch to subscriptions and reports the
// batch done when every event is delivered or parked in Kafka, so the
// group may commit. maxMessageBytes is the decoder's limit (0: the
// default).
func (d *Dispatcher) EventHandler(maxMessageBytes int) consumer.Stager {
	return &eventHandler{d: d, decoders: pipeline.NewDecoders(maxMessageBytes)}
}

// eventHandler decodes with the sink group's decoders and derives drops
// with its rule (pipeline.Decoders, pipeline.DerivedDrop); only what it
// does with the events is its own.
type eventHandler struct {
	d        *Dispatcher
	decoders *pipeline.Decoders

	// bufs are each partition's decoded chunk, reused by its next Stage
	// (a partition's Stage calls come one at a time from its goroutine).
	// Nothing of an event outlives the Stage that decoded it.
	mu   sync.Mutex
	bufs map[bufKey]*stageBuf
}

type bufKey struct {
	topic     string
	partition int
}

// stageBuf is a partition's decoded batch: its events and what the
// group does with each.
type stageBuf struct {
	evs   []schemas.Event
	roles []eventRole
	ends  []int // where each message's events end in evs
}

// eventRole says what the webhook group does with an event under
// re-routing (pipeline.Router): an event is delivered where the producer
// put it, so delivery never waits for the sink group's copy (which waits
// for ClickHouse); its list changes and derived drop come from the copy,
// where its recipient's slice is held.
type eventRole uint8

const (
	roleOwn       eventRole = iota // delivered; its changes and drop here
	roleRoutedOut                  // delivered; changes and drop from its copy
	roleCopy                       // a routed copy: changes and drop only
)

// buf is the decoded-batch buffer of a partition.
func (h *eventHandler) buf(topic string, partition int) *stageBuf {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := bufKey{topic, partition}
	b := h.bufs[k]
	if b == nil {
		if h.bufs == nil {
			h.bufs = map[bufKey]*stageBuf{}
		}
		b = new(stageBuf)
		h.bufs[k] = b
	}
	return b
}

// Assigned: the webhook group keeps no marks; it resumes at the commit,
// once the suppression index caught up with the change log (CatchUp).
func (h *eventHandler) Assigned(ctx context.Context, topic string, partition int) (int64, error) {
	if hs, ok := h.d.cfg.Drops.(pipeline.SliceHolder); ok {
		if err := pipeline.HoldAssigned(ctx, hs, pipeline.SliceOwner{Handler: h, Topic: topic, Partition: partition}); err != nil {
			return 0, err
		}
	}
	if h.d.cfg.CatchUp != nil {
		cctx, cancel := context.WithTimeout(ctx, pipeline.CatchUpTimeout)
		defer cancel()
		if err := h.d.cfg.CatchUp(cctx); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// Revoked lets go of the suppression slices held for the partition
// (pipeline.SliceHolder).
func (h *eventHandler) Revoked(topic string, partition int) {
	h.mu.Lock()
	delete(h.bufs, bufKey{topic, partition})
	h.mu.Unlock()
	if hs, ok := h.d.cfg.Drops.(pipeline.SliceHolder); ok {
		hs.Release(pipeline.SliceOwner{Handler: h, Topic: topic, Partition: partition})
	}
}

// Handle delivers msgs (at least once) and returns when every event is
// delivered or parked. See the package doc.
func (h *eventHandler) Handle(ctx context.Context, topic string, partition int, msgs []consumer.Message) error {
	done, err := h.Stage(ctx, topic, partition, msgs)
	if err != nil {
		return err
	}
	return done(ctx)
}

// Stage hands the events of msgs to their endpoints' lanes and returns
// done, which waits until every one of them is delivered or parked
// (consumer.Stager): the group hands on its next batches meanwhile, so a
// hanging endpoint does not hold back the others, and commits in order.
//
// A lane takes what its queue (and the node's) has room for. While a lane
// is full but sending (circuit closed, no attempt past SlowAfter), Stage
// waits for room, up to QueueTimeout or ctx: the consumer goes at the
// pace of the endpoints rather than filling the retry tiers. What a lane
// that is not sending, or still full after the wait, cannot take is parked
// in the first retry tier at once. Stage fails, taking nothing, only when
// the subscriptions were never read, a message is malformed or the
// suppression slices of the batch's recipients cannot be held in time
// (the list changes of the chunks before stay learned: a change applied
// again changes nothing).
//
// Under re-routing (Config.Route) every event is delivered from the
// partition the producer put it in, so delivery never waits for the sink
// group (whose copies wait for ClickHouse); an event routed elsewhere
// gets its list changes and derived drop from its copy, where its
// recipient's slice is held.
func (h *eventHandler) Stage(ctx context.Context, topic string, partition int, msgs []consumer.Message) (func(context.Context) error, error) {
	d := h.d
	snap := d.snap.Load()
	if snap == nil {
		return nil, ErrNotReady
	}
	t := newTracker()
	byLane := map[*lane][]pendingEvent{}
	// A chunk of messages at a time (about stageChunkEvents events):
	// decode it, let the suppression index learn its list changes (with
	// their positions), then derive its drops and hand its events on. So
	// a drop sees the changes of every earlier event in the partition,
	// as in the sink group, even when this group is ahead of the sink
	// (pipeline.ListChanges, suppression.Index.DropReasonAt), while the
	// decoded events in memory stay few (a batch is up to 20,000
	// messages).
	buf := h.buf(topic, partition)
	defer func() {
		clear(buf.evs[:cap(buf.evs)]) // the batch's strings are not kept alive
		buf.evs, buf.roles = buf.evs[:0], buf.roles[:0]
	}()
	for lo := 0; lo < len(msgs); {
		hi := h.decodeChunk(buf, topic, partition, msgs, lo)
		if err := h.learn(ctx, topic, partition, buf); err != nil {
			return nil, err
		}
		if err := h.match(snap, msgs[lo:hi], buf, t, byLane); err != nil {
			return nil, err
		}
		lo = hi
	}
	var full []laneEvents
	for l, pe := range byLane {
		t.add(len(pe))
		if n := l.add(pe); n < len(pe) {
			full = append(full, laneEvents{l, pe[n:]})
		}
	}
	clear(byLane)
	if len(full) > 0 {
		d.admit(ctx, full)
	}
	t.finish(1, nil)
	return t.wait, nil
}

// stageChunkEvents is about how many decoded events Stage keeps at once.
const stageChunkEvents = 1024

// decodeChunk decodes msgs from lo on into buf (replacing what it held)
// until it holds stageChunkEvents events or msgs end, and returns the
// index after the last message decoded. buf.ends[i] is where the events
// of msgs[lo+i] end.
func (h *eventHandler) decodeChunk(buf *stageBuf, topic string, partition int, msgs []consumer.Message, lo int) int {
	d := h.d
	dec := h.decoders.For(topic, partition)
	evs, roles, ends := buf.evs[:0], buf.roles[:0], buf.ends[:0]
	route := d.cfg.Route
	routedIn := route != nil && topic == route.RoutedTopic()
	i := lo
	for ; i < len(msgs) && len(evs) < stageChunkEvents; i++ {
		n0 := len(evs)
		if routedIn {
			// A routed copy: the events the sink group sent to this
			// partition, decoded as the source message (its ids and
			// positions).
			evs, _, _ = route.DecodeCopy(dec, &msgs[i], partition, evs)
			for range len(evs) - n0 {
				roles = append(roles, roleCopy)
			}
			ends = append(ends, len(evs))
			continue
		}
		var rejs []schemas.Rejection
		evs, rejs = pipeline.Decode(dec, &msgs[i], 0, evs)
		for k := n0; k < len(evs); k++ {
			r := roleOwn
			if route != nil && route.Destination(&evs[k], partition) >= 0 {
				r = roleRoutedOut
			}
			roles = append(roles, r)
		}
		ends = append(ends, len(evs))
		for _, r := range rejs {
			d.m.badInput.WithLabelValues(string(r.Code)).Inc()
		}
	}
	buf.evs, buf.roles, buf.ends = evs, roles, ends
	return i
}

// learn holds the suppression slices of buf's recipients and applies the
// list changes of buf's events (not of those routed elsewhere: their
// copies carry them to the holder of their slice).
func (h *eventHandler) learn(ctx context.Context, topic string, partition int, buf *stageBuf) error {
	d := h.d
	if d.cfg.Drops == nil {
		return nil
	}
	evs, roles := buf.evs, buf.roles
	var changes []suppression.Change
	for k := range evs {
		if roles[k] != roleRoutedOut {
			changes = pipeline.ListChanges(changes, d.cfg.Classifier, &evs[k])
		}
	}
	if hs, ok := d.cfg.Drops.(pipeline.SliceHolder); ok {
		owner := pipeline.SliceOwner{Handler: h, Topic: topic, Partition: partition}
		if _, err := pipeline.HoldRecipients(ctx, hs, owner, changes, func(yield func(*schemas.Event) bool) {
			for k := range evs {
				if roles[k] != roleRoutedOut && !yield(&evs[k]) {
					return
				}
			}
		}, nil); err != nil {
			return err
		}
	}
	for _, c := range changes {
		d.cfg.Drops.Apply(c)
	}
	return nil
}

// match adds the events of msgs (decoded in buf) and their derived drops
// to the lanes of the endpoints that want them, in byLane.
func (h *eventHandler) match(snap *snapshot, msgs []consumer.Message, buf *stageBuf, t *tracker, byLane map[*lane][]pendingEvent) error {
	d := h.d
	evs, roles, ends := buf.evs, buf.roles, buf.ends
	for i := range msgs {
		msg := &msgs[i]
		var elems [][]byte
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		for k := start; k < ends[i]; k++ {
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
			var bounce *filled
			for _, ep := range eps {
				if roles[k] == roleCopy || !ep.Wants(string(ev.Event)) {
					// A copy's event is delivered from its source
					// partition.
					continue
				}
				payload := raw
				switch {
				case ev.Event == schemas.EventBounce:
					// Bounces and blocks as SendGrid sends them (payload.go).
					if bounce == nil {
						f := fillBounce(d.cfg.Classifier, eventJSON(elems[ev.Index], ev), ev)
						bounce = &f
					}
					payload = bounce.for_(ep.BouncerFields)
				case raw == nil:
					raw = eventJSON(elems[ev.Index], ev)
					payload = raw
				}
				l := d.lane(ep)
				byLane[l] = append(byLane[l], pendingEvent{raw: payload, ts: ev.Timestamp, t: t})
			}
			if d.cfg.Drops != nil && ev.Event == schemas.EventProcessed && roles[k] != roleRoutedOut {
				h.derivedDrop(eps, elems[ev.Index], ev, t, byLane)
			}
		}
	}
	return nil
}

// laneEvents are events a lane has not taken yet.
type laneEvents struct {
	l  *lane
	pe []pendingEvent
}

// admit gives full lanes their events as room frees up, while they are
// sending, for up to QueueTimeout (or until ctx ends); the rest is parked
// in the first retry tier.
func (d *Dispatcher) admit(ctx context.Context, full []laneEvents) {
	limit := d.cfg.QueueTimeout
	if dl, ok := ctx.Deadline(); ok {
		// Leave the events taken last the time to wait in the queue or
		// for a slow attempt before the caller's deadline.
		limit = min(limit, time.Until(dl)-max(d.cfg.QueueTimeout, d.cfg.SlowAfter)-d.cfg.MaxBatchWait)
	}
	timer := time.NewTimer(max(limit, 0))
	defer timer.Stop()
	expired := limit <= 0
	for len(full) > 0 {
		room := d.roomSignal() // before looking: a later freeing closes it
		keep := full[:0]
		for _, f := range full {
			f.pe = f.pe[f.l.add(f.pe):]
			switch {
			case len(f.pe) == 0:
			case expired || !f.l.sending():
				d.overflow(f.l, f.pe)
			default:
				keep = append(keep, f)
			}
		}
		clear(full[len(keep):])
		full = keep
		if len(full) == 0 || expired {
			return
		}
		select {
		case <-room:
		case <-timer.C:
			expired = true
		case <-ctx.Done():
			expired = true
		}
	}
}

// overflow parks events a lane cannot take in the first retry tier.
func (d *Dispatcher) overflow(l *lane, pe []pendingEvent) {
	for _, j := range l.overflowJobs(pe) {
		j.b.Tier, j.b.Due = 0, d.now().Add(d.cfg.Schedule.Delays[0])
		d.park(j)
	}
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
			raw = fillDropped(raw)
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
