package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Config of a Handler.
type Config struct {
	Sink      Sink
	Publisher Publisher
	// Classifier classifies bounces; required.
	Classifier *enrich.Classifier
	// Agents, when set, classifies the user agent of open and click events
	// (browser, mail client, device type); nil leaves those columns empty.
	Agents *enrich.Agents
	// Geo, when set, places the ip of open and click events (country,
	// region); nil leaves those columns empty.
	Geo *enrich.Geo
	// MaxMessageBytes bounds one Kafka message; default 1 MiB.
	MaxMessageBytes int
	// Suppressions, when set, turns a processed event for a suppressed
	// recipient into a derived dropped event beside it, and learns this
	// worker's own list changes.
	Suppressions Suppressions
	// Changes, when set, receives every suppression change (the change-log
	// topic senders mirror).
	Changes suppression.Publisher
	// CatchUp, when set, is called when a partition is assigned, after its
	// marks are read: it returns once Suppressions holds every change
	// announced until then (consumer.IndexFollower.CatchUp), so the drops
	// of the partition's next events count the changes its previous owner
	// announced. An error (after at most CatchUpTimeout) makes the
	// assignment fail and be retried.
	CatchUp func(context.Context) error
	// Route, when set, re-routes the events a producer put in another
	// partition than their recipient's suppression slice (route.go): they
	// are copied with Copies to the routed topic, whose partitions this
	// handler is given too (consumer.GroupConfig.Topics), and stored from
	// there. The Sink must be a RoutedMarker.
	Route  *Router
	Copies CopyWriter
	// History, when set, enables SoftBounces: repeated soft bounces of one
	// recipient put it on the bounce list.
	History     History
	SoftBounces SoftBouncePolicy
	Logger      *slog.Logger
	Metrics     *Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxFutureSkew bounds how far an event's time may be ahead of its
	// message: an event dated later than the earlier of the Kafka record's
	// time and Now, plus MaxFutureSkew, is dead-lettered with
	// future_timestamp (see the package doc). Default 1h; negative turns
	// the bound off.
	MaxFutureSkew time.Duration
}

// CatchUpTimeout bounds one call of Config.CatchUp.
const CatchUpTimeout = 30 * time.Second

// DefaultMaxFutureSkew is Config.MaxFutureSkew's default.
const DefaultMaxFutureSkew = time.Hour

// Validate reports the first missing or bad field.
func (c *Config) Validate() error {
	switch {
	case c.Sink == nil:
		return errors.New("pipeline: Config.Sink is required")
	case c.Publisher == nil:
		return errors.New("pipeline: Config.Publisher is required")
	case c.Classifier == nil:
		return errors.New("pipeline: Config.Classifier is required")
	case c.MaxMessageBytes < 0:
		return fmt.Errorf("pipeline: Config.MaxMessageBytes %d: want >= 0", c.MaxMessageBytes)
	case c.Route != nil && c.Copies == nil:
		return errors.New("pipeline: Config.Route needs Config.Copies")
	}
	if _, ok := c.Sink.(RoutedMarker); c.Route != nil && !ok {
		return errors.New("pipeline: Config.Route needs a Sink that reads routed marks (RoutedMarker)")
	}
	return c.SoftBounces.Validate()
}

// Handler is the sink group's consumer.BatchHandler.
type Handler struct {
	cfg      Config
	decoders *Decoders
	mu       sync.Mutex
	parts    map[partKey]*partState
}

var (
	_ consumer.BatchHandler = (*Handler)(nil)
	_ consumer.Revoker      = (*Handler)(nil)
)

type partKey struct {
	topic     string
	partition int
}

// partState is one partition's scratch; only its partition's goroutine
// touches it.
type partState struct {
	marks Marks
	known bool
	evs   []schemas.Event
	rows  []Row
	// drops are the batch's derived drops, each with the row it follows.
	drops []derivedRow
	dls   []schemas.DeadLetter
	sups  []suppression.Change
	// slices is the scratch of the change-log partitions of the batch's
	// recipients (SliceHolder).
	slices []int
	// copies are the batch's routed copies; routed, for a partition of the
	// routed topic, the highest source offset stored per source partition
	// (route.go).
	copies []consumer.Copy
	routed map[int]int64
}

// NewHandler checks cfg and returns a Handler.
func NewHandler(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxFutureSkew == 0 {
		cfg.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Handler{cfg: cfg, decoders: NewDecoders(cfg.MaxMessageBytes), parts: map[partKey]*partState{}}, nil
}

func (h *Handler) state(topic string, partition int) *partState {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := partKey{topic, partition}
	st := h.parts[k]
	if st == nil {
		st = &partState{}
		h.parts[k] = st
	}
	return st
}

// maxTimestamp is the latest event time msg may carry: the earlier of its
// Kafka time and the clock, plus MaxFutureSkew. The record's time makes the
// decision the same when a batch is handled again later (after a failure
// or on another worker), so an event never lands both in the dead letters
// and in the events; the clock caps a record dated in the future.
func (h *Handler) maxTimestamp(msg *consumer.Message) int64 {
	if h.cfg.MaxFutureSkew < 0 {
		return 0
	}
	ref := h.cfg.Now()
	if !msg.Time.IsZero() && msg.Time.Unix() > 0 && msg.Time.Before(ref) {
		ref = msg.Time
	}
	return ref.Add(h.cfg.MaxFutureSkew).Unix()
}

// Assigned reads the partition's marks afresh from the sink.
func (h *Handler) Assigned(ctx context.Context, topic string, partition int) (int64, error) {
	st := h.state(topic, partition)
	st.known = false
	if err := h.loadMarks(ctx, st, topic, partition); err != nil {
		return 0, err
	}
	if hs, ok := h.cfg.Suppressions.(SliceHolder); ok {
		// The partition's slice of the lists, loaded and caught up with
		// the change log (what its previous owner announced included).
		if err := HoldAssigned(ctx, hs, SliceOwner{h, topic, partition}); err != nil {
			return 0, err
		}
	}
	if h.cfg.CatchUp != nil {
		cctx, cancel := context.WithTimeout(ctx, CatchUpTimeout)
		err := h.cfg.CatchUp(cctx)
		cancel()
		if err != nil {
			return 0, err
		}
	}
	// Everything at or below the events mark is fully handled: a batch
	// writes its dead letters before its events. The dead-letters mark
	// proves less (the events of its batch may be missing), so it only
	// filters; a tail of bad messages past the events mark is skipped via
	// the committed offset instead.
	return st.marks.Events + 1, nil
}

func (h *Handler) loadMarks(ctx context.Context, st *partState, topic string, partition int) error {
	if st.known {
		return nil
	}
	m, err := h.cfg.Sink.HighWater(ctx, topic, partition)
	if err != nil {
		return fmt.Errorf("read high-water marks of %s/%d: %w", topic, partition, err)
	}
	if h.routedIn(topic) {
		st.routed, err = h.cfg.Sink.(RoutedMarker).RoutedMarks(ctx, topic, partition)
		if err != nil {
			return fmt.Errorf("read routed marks of %s/%d: %w", topic, partition, err)
		}
	}
	st.marks, st.known = m, true
	return nil
}

// routedIn reports whether topic is the routed copies' topic.
func (h *Handler) routedIn(topic string) bool {
	return h.cfg.Route != nil && topic == h.cfg.Route.RoutedTopic()
}

// Revoked lets go of the suppression slices held for the partition
// (SliceHolder).
func (h *Handler) Revoked(topic string, partition int) {
	if hs, ok := h.cfg.Suppressions.(SliceHolder); ok {
		hs.Release(SliceOwner{h, topic, partition})
	}
}

// Handle decodes, enriches and writes msgs. See the package doc for the
// order of writes and what a failure leaves behind.
func (h *Handler) Handle(ctx context.Context, topic string, partition int, msgs []consumer.Message) (err error) {
	st := h.state(topic, partition)
	defer func() {
		if err != nil {
			st.known = false // what landed is unknown: ask the sink again
		}
	}()
	if err := h.loadMarks(ctx, st, topic, partition); err != nil {
		return err
	}
	ctx = WithWriter(ctx, topic, partition)
	st.rows, st.dls, st.sups, st.copies = st.rows[:0], st.dls[:0], st.sups[:0], st.copies[:0]
	m := h.cfg.Metrics
	dec := h.decoders.For(topic, partition)
	routedIn := h.routedIn(topic)
	for i := range msgs {
		msg := &msgs[i]
		if routedIn {
			m.consumed.Inc()
			h.takeCopy(st, dec, msg)
			continue
		}
		var rejs []schemas.Rejection
		maxTS := h.maxTimestamp(msg)
		st.evs, rejs = Decode(dec, msg, maxTS, st.evs[:0])
		m.consumed.Inc()
		if msg.Offset > st.marks.DeadLetters {
			for _, r := range rejs {
				st.dls = append(st.dls, schemas.DeadLetter{
					Topic: msg.Topic, Partition: msg.Partition, Offset: msg.Offset,
					Index: r.Index, Code: r.Code, Detail: r.Detail, Raw: r.Raw, Key: msg.Key,
				})
			}
		}
		if msg.Offset > st.marks.Events {
			copied := len(st.copies)
			for _, ev := range st.evs {
				if h.cfg.Route != nil {
					if p := h.cfg.Route.Destination(&ev, partition); p >= 0 {
						// One copy per destination of the message.
						if !slices.ContainsFunc(st.copies[copied:], func(c consumer.Copy) bool { return c.Partition == p }) {
							st.copies = append(st.copies, consumer.Copy{Partition: p, Source: msg, MaxTimestamp: maxTS})
						}
						continue
					}
				}
				row := h.enrich(ev)
				st.rows = append(st.rows, row)
				st.sups = appendSuppressions(st.sups, &row)
			}
		}
	}

	if h.cfg.History != nil {
		more, err := h.escalations(ctx, st.rows)
		if err != nil {
			return err
		}
		st.sups = append(st.sups, more...)
	}
	// The index learns the batch's list changes before any drop is
	// derived: each change carries its event's position, and the decision
	// for an event sees only the changes of earlier events in its
	// partition (suppression.Index.DropReasonAt), so it does not depend on
	// where batches begin and end.
	if hs, ok := h.cfg.Suppressions.(SliceHolder); ok {
		var err error
		st.slices, err = HoldRecipients(ctx, hs, SliceOwner{h, topic, partition}, st.sups, func(yield func(*schemas.Event) bool) {
			for i := range st.rows {
				if !yield(&st.rows[i].Event) {
					return
				}
			}
		}, st.slices)
		if err != nil {
			return err
		}
	}
	if h.cfg.Suppressions != nil {
		for _, c := range st.sups {
			h.cfg.Suppressions.Apply(c)
		}
		st.drops = st.drops[:0]
		for i := range st.rows {
			if drop, ok := h.derivedDrop(&st.rows[i]); ok {
				st.drops = append(st.drops, derivedRow{i, drop})
			}
		}
		st.rows = insertDrops(st.rows, st.drops)
	}

	// Dead letters, suppression changes and recipient history are
	// independent of each other: write them concurrently (each chain keeps
	// its own order). All must land before the events, whose mark says the
	// batch is done.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	if len(st.copies) > 0 {
		// Acknowledged before the events (and so the resume point) move
		// past their messages: route.go's (A).
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.cfg.Copies.WriteCopies(ctx, st.copies); err != nil {
				errs[3] = fmt.Errorf("write routed copies: %w", err)
			}
		}()
	}
	if len(st.dls) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h.cfg.Publisher.PublishDeadLetters(ctx, st.dls); err != nil {
				errs[0] = fmt.Errorf("publish dead letters: %w", err)
			} else if err := consumer.CheckOwnership(ctx); err != nil {
				errs[0] = err
			} else if err := h.cfg.Sink.WriteDeadLetters(ctx, st.dls); err != nil {
				errs[0] = fmt.Errorf("write dead letters: %w", err)
			}
		}()
	}
	if len(st.sups) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Stored, then announced: the one rule (suppression.Writer).
			errs[1] = suppression.Writer{Store: h.cfg.Sink, Changes: h.cfg.Changes}.Write(ctx, st.sups)
		}()
	}
	if h.cfg.History != nil {
		if hist := historyOf(nil, st.rows); len(hist) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := h.cfg.History.WriteHistory(ctx, hist); err != nil {
					errs[2] = fmt.Errorf("write recipient history: %w", err)
				}
			}()
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(st.dls) > 0 {
		for _, d := range st.dls {
			m.deadLettered.WithLabelValues(string(d.Code)).Inc()
		}
		st.marks.DeadLetters = st.dls[len(st.dls)-1].Offset
	}
	m.suppressions.Add(float64(len(st.sups)))
	m.routed.Add(float64(len(st.copies)))
	if len(st.rows) > 0 {
		// The consumer's check that this member still owns the partition
		// (consumer.CheckOwnership), right before the insert the resume
		// point counts.
		if err := consumer.CheckOwnership(ctx); err != nil {
			return err
		}
		start := h.cfg.Now()
		if err := h.cfg.Sink.WriteEvents(ctx, st.rows); err != nil {
			m.insertErrors.Inc()
			return fmt.Errorf("write %d events: %w", len(st.rows), err)
		}
		m.insertSeconds.Observe(h.cfg.Now().Sub(start).Seconds())
		m.batchRows.Observe(float64(len(st.rows)))
		m.written.Add(float64(len(st.rows)))
		st.marks.Events = st.rows[len(st.rows)-1].Offset
	}
	// Drop references to this batch's bytes so they can be collected.
	clear(st.copies)
	clear(st.rows)
	clear(st.drops)
	clear(st.dls)
	return nil
}

// derivedRow is a derived drop and the index of the row it follows.
type derivedRow struct {
	after int
	row   Row
}

// insertDrops puts each drop right after its row (drops in row order), in
// rows' own array: a second copy of a partition's batch of rows was a
// tenth of the worker's memory.
func insertDrops(rows []Row, drops []derivedRow) []Row {
	n, m := len(rows), len(drops)
	if m == 0 {
		return rows
	}
	rows = slices.Grow(rows, m)[:n+m]
	src, dst := n-1, n+m-1
	for k := m - 1; k >= 0; k-- {
		for ; src > drops[k].after; src, dst = src-1, dst-1 {
			rows[dst] = rows[src]
		}
		rows[dst] = drops[k].row
		dst--
	}
	return rows
}

// derivedDrop is the sink group's side of the derived-drop rule
// (DerivedDrop): the row of the dropped event, counted.
func (h *Handler) derivedDrop(row *Row) (Row, bool) {
	if h.cfg.Suppressions == nil {
		return Row{}, false
	}
	d, ok := derivedDropAt(&row.Event, h.cfg.Suppressions, rowPosition(row))
	if !ok {
		return Row{}, false
	}
	h.cfg.Metrics.dropped.WithLabelValues(d.Reason).Inc()
	return Row{Event: d, Provider: enrich.ProviderForDomain(d.Domain), Derived: true,
		SourceTopic: row.SourceTopic, SourcePartition: row.SourcePartition, SourceOffset: row.SourceOffset}, true
}

// takeCopy adds the rows of a routed copy read from the routed topic,
// unless its source message is stored already (route.go's (B)).
func (h *Handler) takeCopy(st *partState, dec *schemas.Decoder, msg *consumer.Message) {
	if msg.Offset <= st.marks.Events {
		return
	}
	var src consumer.RoutedSource
	var ok bool
	st.evs, src, ok = h.cfg.Route.DecodeCopy(dec, msg, msg.Partition, st.evs[:0])
	if !ok {
		h.cfg.Logger.Warn("routed topic: a message that is not a routed copy (no source headers); skipped",
			"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
		return
	}
	if mark, ok := st.routed[src.Partition]; ok && src.Offset <= mark {
		h.cfg.Metrics.routedAgain.Inc()
		return
	}
	if st.routed == nil {
		st.routed = map[int]int64{}
	}
	// Taken: a copy of it later in this batch is skipped too. A failure
	// before the write reads the marks again (Handle).
	st.routed[src.Partition] = src.Offset
	for _, ev := range st.evs {
		row := h.enrich(ev)
		row.SourceTopic, row.SourcePartition, row.SourceOffset = ev.Topic, ev.Partition, ev.Offset
		row.Topic, row.Partition, row.Offset = msg.Topic, msg.Partition, msg.Offset
		st.rows = append(st.rows, row)
		st.sups = appendSuppressions(st.sups, &st.rows[len(st.rows)-1])
	}
}

// enrich adds the provider; for bounces and deferrals, the
// classification; for opens and clicks, the user agent's browser, client
// and device and the ip's place.
func (h *Handler) enrich(ev schemas.Event) Row {
	row := enrichRow(h.cfg.Classifier, ev)
	if ev.Event == schemas.EventOpen || ev.Event == schemas.EventClick {
		if h.cfg.Agents != nil && ev.UserAgent != "" {
			row.Agent = h.cfg.Agents.Classify(ev.UserAgent)
		}
		if h.cfg.Geo != nil && ev.IP != "" {
			row.Place = h.cfg.Geo.Lookup(ev.IP)
		}
	}
	return row
}

// ListChanges appends the list changes ev implies, as the sink group
// derives them (a hard bounce on bounces, a spam report on spam_reports,
// ...; see appendSuppressions), each with ev's position. The webhook group
// calls it so that its derived drops see the same changes as the sink's
// whichever group is ahead. Bounces need classifier (nil: no bounce
// changes but those of invalid addresses). The soft-bounce policy's changes need the recipients' history
// and come only from the sink group.
func ListChanges(dst []suppression.Change, classifier *enrich.Classifier, ev *schemas.Event) []suppression.Change {
	switch ev.Event {
	case schemas.EventSpamReport, schemas.EventUnsubscribe, schemas.EventGroupUnsubscribe, schemas.EventGroupResubscribe:
		return appendSuppressions(dst, &Row{Event: *ev})
	case schemas.EventBounce:
		row := Row{Event: *ev}
		if classifier != nil {
			row = enrichRow(classifier, *ev)
		}
		return appendSuppressions(dst, &row)
	}
	return dst
}

func enrichRow(classifier *enrich.Classifier, ev schemas.Event) Row {
	row := Row{Event: ev, Provider: enrich.ProviderForDomain(ev.Domain)}
	if ev.Event == schemas.EventBounce || ev.Event == schemas.EventDeferred {
		res, err := classifier.Classify(enrich.Input{
			Event: string(ev.Event), Type: ev.Type, Reason: ev.Reason,
			Response: ev.Response, Status: ev.Status, Email: ev.Email,
		})
		if err == nil {
			row.Bounce = &res
			if row.Provider == "" {
				row.Provider = res.Provider
			}
		}
	}
	return row
}

// eventPosition is where ev sits in the event stream.
func eventPosition(ev *schemas.Event) suppression.Position {
	return suppression.Position{Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset, Index: ev.Index}
}

// ListOf is the suppression list a bounce row puts its recipient on
// (invalid_emails, bounces or blocks, as appendSuppressions decides), or ""
// when it puts it on none. bouncer reclassify compares it before and after.
func ListOf(row *Row) string {
	var one [1]suppression.Change
	if cs := appendSuppressions(one[:0], row); len(cs) > 0 {
		return cs[0].List
	}
	return ""
}

// appendSuppressions adds the list changes an event implies. The
// suppression issue's policy engine refines soft-bounce escalation; here a
// hard bounce goes on bounces, a block on blocks, a malformed address on
// invalid_emails, and spam reports and unsubscribes on their lists.
func appendSuppressions(dst []suppression.Change, row *Row) []suppression.Change {
	ev := &row.Event
	change := func(list string, group int64, deleted bool) suppression.Change {
		c := suppression.Change{
			AccountID: ev.AccountID, List: list, GroupID: group,
			EmailNorm: ev.EmailNorm, Email: ev.Email, At: time.Unix(ev.Timestamp, 0).UTC(),
			Reason: ev.Reason, Status: ev.Status, Deleted: deleted,
			Source: "event:" + ev.SGEventID,
			Src:    rowPosition(row),
		}
		if row.Bounce != nil {
			c.Classification = string(row.Bounce.Classification)
			c.ReasonCode = string(row.Bounce.Reason)
			if c.Status == "" {
				c.Status = row.Bounce.Status.String()
			}
		}
		return c
	}
	switch ev.Event {
	case schemas.EventBounce:
		if !ev.AddressValid || (row.Bounce != nil && row.Bounce.Reason == "address_invalid") {
			return append(dst, change(suppression.ListInvalidEmails, 0, false))
		}
		if row.Bounce == nil {
			return dst
		}
		if row.Bounce.BounceType == enrich.Hard {
			return append(dst, change(suppression.ListBounces, 0, false))
		}
		if ev.Type == schemas.TypeBlocked {
			return append(dst, change(suppression.ListBlocks, 0, false))
		}
	case schemas.EventSpamReport:
		return append(dst, change(suppression.ListSpamReports, 0, false))
	case schemas.EventUnsubscribe:
		return append(dst, change(suppression.ListUnsubscribes, 0, false))
	case schemas.EventGroupUnsubscribe:
		return append(dst, change(suppression.ListUnsubscribes, ev.ASMGroupID, false))
	case schemas.EventGroupResubscribe:
		return append(dst, change(suppression.ListUnsubscribes, ev.ASMGroupID, true))
	}
	return dst
}
