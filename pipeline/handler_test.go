package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// fakeSink is an in-memory Sink whose writes can fail; a failed write may
// still land (as an insert that timed out after the server stored it).
type fakeSink struct {
	mu     sync.Mutex // the handler writes side tables concurrently
	rng    *rand.Rand
	failP  float64
	events map[string]int // identity -> copies
	dead   map[string]int
	sups   int
	// high-water marks per topic and partition, as ClickHouse would report
	// them.
	evHi, dlHi map[tp]int64
}

// tp names a partition of a topic.
type tp struct {
	topic     string
	partition int
}

var errInjected = errors.New("injected failure")

func newFakeSink(seed uint64, failP float64) *fakeSink {
	return &fakeSink{rng: rand.New(rand.NewPCG(seed, 1)), failP: failP,
		events: map[string]int{}, dead: map[string]int{}, evHi: map[tp]int64{}, dlHi: map[tp]int64{}}
}

// outcome decides a write: fail before storing, store then fail, or store.
func (s *fakeSink) outcome() (store bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r := s.rng.Float64(); {
	case r < s.failP/2:
		return false, errInjected
	case r < s.failP:
		return true, errInjected
	}
	return true, nil
}

func (s *fakeSink) HighWater(_ context.Context, topic string, p int) (Marks, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Marks{Events: -1, DeadLetters: -1}
	if v, ok := s.evHi[tp{topic, p}]; ok {
		m.Events = v
	}
	if v, ok := s.dlHi[tp{topic, p}]; ok {
		m.DeadLetters = v
	}
	return m, nil
}

func (s *fakeSink) WriteEvents(_ context.Context, rows []Row) error {
	store, err := s.outcome()
	s.mu.Lock()
	defer s.mu.Unlock()
	if store {
		for _, r := range rows {
			s.events[fmt.Sprintf("%d/%d/%d", r.Partition, r.Offset, r.Index)]++
			s.evHi[tp{r.Topic, r.Partition}] = max(s.evHi[tp{r.Topic, r.Partition}], r.Offset)
		}
	}
	return err
}

func (s *fakeSink) WriteDeadLetters(_ context.Context, rows []schemas.DeadLetter) error {
	store, err := s.outcome()
	s.mu.Lock()
	defer s.mu.Unlock()
	if store {
		for _, r := range rows {
			s.dead[fmt.Sprintf("%d/%d/%d", r.Partition, r.Offset, r.Index)]++
			s.dlHi[tp{r.Topic, r.Partition}] = max(s.dlHi[tp{r.Topic, r.Partition}], r.Offset)
		}
	}
	return err
}

func (s *fakeSink) WriteSuppressions(_ context.Context, rows []suppression.Change) error {
	store, err := s.outcome()
	s.mu.Lock()
	defer s.mu.Unlock()
	if store {
		s.sups += len(rows)
	}
	return err
}

type fakePublisher struct {
	sink *fakeSink
	seen map[string]bool
}

func (p *fakePublisher) PublishDeadLetters(_ context.Context, rows []schemas.DeadLetter) error {
	store, err := p.sink.outcome()
	p.sink.mu.Lock()
	defer p.sink.mu.Unlock()
	if store {
		for _, r := range rows {
			p.seen[fmt.Sprintf("%d/%d/%d", r.Partition, r.Offset, r.Index)] = true
		}
	}
	return err
}

// message makes message offset o: good, bad, or an array with a bad middle.
func message(o int64) (consumer.Message, int, int) {
	m := consumer.Message{Topic: "t", Partition: 0, Offset: o}
	switch o % 7 {
	case 3:
		m.Value = []byte(`{"event":"delivered","timestamp":1764201600}`) // no email
		return m, 0, 1
	case 5:
		m.Value = []byte(fmt.Sprintf(`[{"event":"delivered","email":"a%d@example.com","timestamp":1764201600},{"event":"nope","email":"b@example.com","timestamp":1},{"event":"bounce","email":"c%d@example.com","timestamp":1764201600,"reason":"550 5.1.1 user unknown"}]`, o, o))
		return m, 2, 1
	}
	m.Value = []byte(fmt.Sprintf(`{"event":"bounce","email":"u%d@example.com","timestamp":1764201600,"reason":"550 5.1.1 no such user"}`, o))
	return m, 1, 0
}

// TestHandlerExactlyOnceUnderFailures drives the handler the way the
// consumer does, through random write failures (some of which land) and
// random "crashes" that lose all in-memory state and resume from the
// committed offset and the sink's marks, and checks that every event and
// dead letter is stored exactly once and every dead letter was published.
func TestHandlerExactlyOnceUnderFailures(t *testing.T) {
	classifier := enrich.MustNew()
	for seed := uint64(1); seed <= 40; seed++ {
		sink := newFakeSink(seed, 0.3)
		pub := &fakePublisher{sink: sink, seen: map[string]bool{}}
		rng := rand.New(rand.NewPCG(seed, 2))
		const total = 300
		wantEvents, wantDead := 0, 0
		for o := int64(0); o < total; o++ {
			_, e, d := message(o)
			wantEvents += e
			wantDead += d
		}
		committed := int64(-1) // next offset to read after a restart, -1: none
		var h *Handler
		var next int64
		restart := func() {
			var err error
			h, err = NewHandler(Config{Sink: sink, Publisher: pub, Classifier: classifier})
			if err != nil {
				t.Fatal(err)
			}
			n, err := h.Assigned(context.Background(), "t", 0)
			if err != nil {
				t.Fatal(err)
			}
			next = max(committed, n)
		}
		restart()
		for steps := 0; next < total; steps++ {
			if steps > 10000 {
				t.Fatalf("seed %d: no progress", seed)
			}
			size := 1 + rng.IntN(40)
			var batch []consumer.Message
			for o := next; o < min(next+int64(size), total); o++ {
				m, _, _ := message(o)
				batch = append(batch, m)
			}
			for {
				err := h.Handle(context.Background(), "t", 0, batch)
				if err == nil {
					break
				}
				if rng.IntN(3) == 0 { // the worker dies instead of retrying
					restart()
					batch = nil
					break
				}
			}
			if batch == nil {
				continue
			}
			last := batch[len(batch)-1].Offset
			if rng.IntN(4) > 0 { // sometimes the commit is lost
				committed = last + 1
			}
			next = last + 1
		}
		if len(sink.events) != wantEvents || len(sink.dead) != wantDead || len(pub.seen) != wantDead {
			t.Fatalf("seed %d: stored %d events (want %d), %d dead letters (want %d), published %d",
				seed, len(sink.events), wantEvents, len(sink.dead), wantDead, len(pub.seen))
		}
		for id, n := range sink.events {
			if n != 1 {
				t.Fatalf("seed %d: event %s stored %d times", seed, id, n)
			}
		}
		for id, n := range sink.dead {
			if n != 1 {
				t.Fatalf("seed %d: dead letter %s stored %d times", seed, id, n)
			}
		}
	}
}

func TestHandlerEnrichesAndSuppresses(t *testing.T) {
	sink := newFakeSink(1, 0)
	var got []Row
	h, err := NewHandler(Config{Sink: recordingSink{sink, &got}, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}}, Classifier: enrich.MustNew()})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []consumer.Message{
		{Topic: "t", Offset: 0, Value: []byte(`{"event":"bounce","email":"x@gmail.com","timestamp":1,"reason":"550 5.1.1 The email account that you tried to reach does not exist."}`)},
		{Topic: "t", Offset: 1, Value: []byte(`{"event":"bounce","email":"y@gmail.com","timestamp":1,"reason":"552 5.2.2 mailbox full"}`)},
		{Topic: "t", Offset: 2, Value: []byte(`{"event":"open","email":"z@gmail.com","timestamp":1}`)},
	}
	if err := h.Handle(context.Background(), "t", 0, msgs); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Bounce == nil || got[0].Bounce.BounceType != enrich.Hard || got[0].Provider != "google" {
		t.Fatalf("rows not enriched: %+v", got)
	}
	if got[1].Bounce == nil || got[1].Bounce.BounceType != enrich.Soft || got[2].Bounce != nil {
		t.Fatalf("soft bounce or open enriched wrongly: %+v %+v", got[1].Bounce, got[2].Bounce)
	}
	if sink.sups != 1 {
		t.Fatalf("suppression changes %d, want 1 (the hard bounce only)", sink.sups)
	}
}

type recordingSink struct {
	*fakeSink
	rows *[]Row
}

func (r recordingSink) WriteEvents(ctx context.Context, rows []Row) error {
	*r.rows = append(*r.rows, rows...)
	return r.fakeSink.WriteEvents(ctx, rows)
}

func TestConfigValidate(t *testing.T) {
	if _, err := NewHandler(Config{}); err == nil {
		t.Fatal("empty config: want an error")
	}
}

// fakeLists drops everything sent to one address.
type fakeLists struct {
	email   string
	applied []suppression.Change
}

func (f *fakeLists) DropReasonAt(account, email string, group int64, at int64, _ suppression.Position) string {
	if email == f.email {
		return "Bounced Address"
	}
	return ""
}

func (f *fakeLists) Apply(c suppression.Change) { f.applied = append(f.applied, c) }

type fakeChanges struct{ got []suppression.Change }

func (f *fakeChanges) PublishChanges(_ context.Context, rows []suppression.Change) error {
	f.got = append(f.got, rows...)
	return nil
}

func TestHandlerDerivesDroppedEvents(t *testing.T) {
	sink := newFakeSink(1, 0)
	var got []Row
	lists := &fakeLists{email: "gone@example.com"}
	changes := &fakeChanges{}
	h, err := NewHandler(Config{Sink: recordingSink{sink, &got}, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}},
		Classifier: enrich.MustNew(), Suppressions: lists, Changes: changes})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []consumer.Message{
		{Topic: "t", Offset: 4, Value: []byte(`{"event":"processed","email":"Gone@Example.com","timestamp":100,"sg_event_id":"p1","category":"x"}`)},
		{Topic: "t", Offset: 5, Value: []byte(`{"event":"processed","email":"fine@example.com","timestamp":100,"sg_event_id":"p2"}`)},
		{Topic: "t", Offset: 6, Value: []byte(`{"event":"bounce","email":"new@gmail.com","timestamp":100,"reason":"550 5.1.1 no such user"}`)},
	}
	if err := h.Handle(context.Background(), "t", 0, msgs); err != nil {
		t.Fatal(err)
	}
	var drops []Row
	for _, r := range got {
		if r.Derived {
			drops = append(drops, r)
		}
	}
	if len(got) != 4 || len(drops) != 1 {
		t.Fatalf("got %d rows with %d derived, want 4 with 1", len(got), len(drops))
	}
	d := drops[0]
	if d.Event.Event != "dropped" || d.Reason != "Bounced Address" || d.Offset != 4 || d.Index != DerivedIndexBit ||
		d.SGEventID != DerivedEventID("dropped", "p1") || d.SGEventID == "p1" || len(d.Categories) != 1 {
		t.Fatalf("derived dropped event: %+v", d.Event)
	}
	if DerivedEventID("dropped", "p1") != DerivedEventID("dropped", "p1") || DerivedEventID("dropped", "p1") == DerivedEventID("dropped", "p2") {
		t.Fatal("derived ids must be stable and distinct")
	}
	if len(changes.got) != 1 || changes.got[0].EmailNorm != "new@gmail.com" || changes.got[0].List != suppression.ListBounces {
		t.Fatalf("published changes: %+v", changes.got)
	}
	if len(lists.applied) != 1 {
		t.Fatalf("the worker's own change was not applied to its index: %+v", lists.applied)
	}
}

// deadRecorder records the dead letters written and the suppression
// changes.
type deadRecorder struct {
	recordingSink
	dead *[]schemas.DeadLetter
	sups *[]suppression.Change
}

func (r deadRecorder) WriteDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error {
	*r.dead = append(*r.dead, rows...)
	return r.fakeSink.WriteDeadLetters(ctx, rows)
}

func (r deadRecorder) WriteSuppressions(ctx context.Context, rows []suppression.Change) error {
	*r.sups = append(*r.sups, rows...)
	return r.fakeSink.WriteSuppressions(ctx, rows)
}

// An event dated more than MaxFutureSkew after its message (its Kafka time,
// or the clock when that is earlier or unknown) is dead-lettered, so it
// puts nobody on a list that a delete could not take it off; the decision
// follows the record's time, so handling the batch again later decides the
// same.
func TestHandlerDeadLettersFutureEvents(t *testing.T) {
	t0 := time.Unix(1764201600, 0).UTC()
	bounce := func(ts time.Time) []byte {
		return fmt.Appendf(nil, `{"event":"bounce","email":"x@gmail.com","timestamp":%d,"reason":"550 5.1.1 The email account that you tried to reach does not exist."}`, ts.Unix())
	}
	msgs := []consumer.Message{
		{Topic: "t", Offset: 0, Time: t0, Value: []byte(`{"event":"bounce","email":"x@gmail.com","timestamp":4102444800,"reason":"550 5.1.1 no such user"}`)},
		{Topic: "t", Offset: 1, Time: t0, Value: bounce(t0.Add(30 * time.Minute))},                       // within the skew: kept
		{Topic: "t", Offset: 2, Value: bounce(t0.Add(2 * time.Hour))},                                    // no record time: the clock
		{Topic: "t", Offset: 3, Time: t0.Add(-3 * time.Hour), Value: bounce(t0.Add(-time.Hour))},         // 2h after its record
		{Topic: "t", Offset: 4, Time: t0.Add(5 * time.Hour), Value: bounce(t0.Add(4 * time.Hour))},       // a record from the future: the clock
		{Topic: "t", Offset: 5, Time: t0.Add(-3 * time.Hour), Value: bounce(t0.Add(-150 * time.Minute))}, // 30 min after its record: kept
	}
	for _, now := range []time.Time{t0, t0.Add(10 * time.Hour)} {
		sink := newFakeSink(1, 0)
		var rows []Row
		var dead []schemas.DeadLetter
		var sups []suppression.Change
		h, err := NewHandler(Config{Sink: deadRecorder{recordingSink{sink, &rows}, &dead, &sups}, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}},
			Classifier: enrich.MustNew(), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Handle(context.Background(), "t", 0, msgs); err != nil {
			t.Fatal(err)
		}
		var deadOffsets, rowOffsets []int64
		for _, d := range dead {
			if d.Code != schemas.CodeFutureTimestamp {
				t.Errorf("offset %d: code %s, want future_timestamp", d.Offset, d.Code)
			}
			deadOffsets = append(deadOffsets, d.Offset)
		}
		for _, r := range rows {
			rowOffsets = append(rowOffsets, r.Offset)
		}
		wantDead, wantRows := []int64{0, 2, 3, 4}, []int64{1, 5}
		if now != t0 {
			wantDead, wantRows = []int64{0, 3}, []int64{1, 2, 4, 5} // later, the clock no longer holds 2 and 4 back
		}
		if fmt.Sprint(deadOffsets) != fmt.Sprint(wantDead) || fmt.Sprint(rowOffsets) != fmt.Sprint(wantRows) {
			t.Errorf("now %v: dead letters at %v, events at %v; want %v and %v", now, deadOffsets, rowOffsets, wantDead, wantRows)
		}
		if len(sups) != len(wantRows) {
			t.Errorf("now %v: %d suppression changes, want %d (one per kept hard bounce)", now, len(sups), len(wantRows))
		}
		for _, d := range dead {
			if d.Offset == 0 && !strings.Contains(d.Detail, "4102444800 (2100-01-01T00:00:00Z)") {
				t.Errorf("detail %q does not name the time", d.Detail)
			}
		}
	}
}

// The derived drops of one stream do not depend on where batches begin
// and end, on failed writes handled again, or on a worker that dies after
// announcing a batch's list changes but before storing its events (its
// successor loads those changes from the change log, then handles the
// batch again): the decision for each event sees the list changes of the
// earlier events in its partition and no others.
func TestDerivedDropsDoNotDependOnBatching(t *testing.T) {
	g := eventgen.New(13)
	g.Recipients = 60 // many events per recipient: drops and same-second changes
	g.Accounts = []string{"acme", "globex"}
	var msgs []consumer.Message
	for i := range 3000 {
		v, _ := g.Next(nil)
		if i%7 == 0 { // some messages hold several events
			v = g.Message(nil, 3)
		}
		msgs = append(msgs, consumer.Message{Topic: "t", Partition: 0, Offset: int64(i), Value: v, Time: time.Unix(1764201600+int64(i), 0)})
	}
	type run struct {
		name  string
		batch int
		failP float64
		die   bool // restart with a new index from the published changes after every failure
	}
	runs := []run{
		{"batches of 1", 1, 0, false},
		{"whole stream", len(msgs), 0, false},
		{"batches of 7", 7, 0, false},
		{"batches of 250", 250, 0, false},
		{"batches of 40, failing writes", 40, 0.2, false},
		{"batches of 40, dying workers", 40, 0.2, true},
	}
	var want []string
	for _, r := range runs {
		sink := newFakeSink(7, r.failP)
		var got []Row
		changes := &fakeChanges{}
		newHandler := func() *Handler {
			index := suppression.New()
			for _, c := range changes.got { // what the change log holds
				index.Apply(c)
			}
			h, err := NewHandler(Config{Sink: storedRows{sink, &got}, Publisher: &fakePublisher{sink: sink, seen: map[string]bool{}},
				Classifier: enrich.MustNew(), Suppressions: index, Changes: changes, MaxFutureSkew: -1})
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		h := newHandler()
		for start := 0; start < len(msgs); {
			end := min(start+r.batch, len(msgs))
			err := h.Handle(context.Background(), "t", 0, msgs[start:end])
			if err != nil {
				if r.die {
					h = newHandler()
				}
				// Resume where the sink's marks say, as the group does.
				next, err := h.Assigned(context.Background(), "t", 0)
				if err != nil {
					t.Fatal(err)
				}
				start = int(next)
				continue
			}
			start = end
		}
		drops := map[string]bool{}
		for _, row := range got {
			if row.Derived {
				drops[row.SGEventID+" "+row.Reason] = true
			}
		}
		var ids []string
		for id := range drops {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if want == nil {
			want = ids
			if len(want) < 20 {
				t.Fatalf("%s: only %d derived drops; the stream should give more", r.name, len(want))
			}
			t.Logf("%s: %d derived drops", r.name, len(want))
			continue
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %d derived drops, want the %d of batches of 1; first differences: %v",
				r.name, len(ids), len(want), diff(ids, want, 5))
		}
	}
}

// storedRows records the rows its fakeSink stored (a failed write may
// have stored them or not).
type storedRows struct {
	*fakeSink
	rows *[]Row
}

func (r storedRows) WriteEvents(_ context.Context, rows []Row) error {
	store, err := r.outcome()
	if store {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, row := range rows {
			id := fmt.Sprintf("%d/%d/%d", row.Partition, row.Offset, row.Index)
			if r.events[id]++; r.events[id] > 1 {
				return fmt.Errorf("row %s stored twice", id)
			}
			r.evHi[tp{row.Topic, row.Partition}] = max(r.evHi[tp{row.Topic, row.Partition}], row.Offset)
			*r.rows = append(*r.rows, row)
		}
	}
	return err
}

// diff lists up to n elements in exactly one of two sorted lists.
func diff(a, b []string, n int) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) && len(out) < n {
			out = append(out, "+"+s)
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) && len(out) < n {
			out = append(out, "-"+s)
		}
	}
	return out
}

// A member that cannot confirm it still owns the partition (the consumer's
// ownership check fails: expelled after a coordinator died) writes no
// events and no dead letters; once the check passes, the batch lands once.
func TestHandlerWritesNothingWithoutOwnership(t *testing.T) {
	sink := newFakeSink(1, 0)
	pub := &fakePublisher{sink: sink, seen: map[string]bool{}}
	h, err := NewHandler(Config{Sink: sink, Publisher: pub, Classifier: enrich.MustNew()})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []consumer.Message
	events, dead := 0, 0
	for o := range int64(20) {
		m, e, d := message(o)
		msgs, events, dead = append(msgs, m), events+e, dead+d
	}
	lost := errors.New("illegal generation")
	ctx := consumer.WithOwnershipCheck(context.Background(), func() error { return lost })
	if err := h.Handle(ctx, "t", 0, msgs); !errors.Is(err, lost) {
		t.Fatalf("Handle without ownership = %v, want the check's error", err)
	}
	if len(sink.events) != 0 || len(sink.dead) != 0 {
		t.Fatalf("without ownership %d events and %d dead letters were written, want none", len(sink.events), len(sink.dead))
	}
	ctx = consumer.WithOwnershipCheck(context.Background(), func() error { return nil })
	if err := h.Handle(ctx, "t", 0, msgs); err != nil {
		t.Fatal(err)
	}
	if len(sink.events) != events || len(sink.dead) != dead {
		t.Fatalf("%d events and %d dead letters stored, want %d and %d", len(sink.events), len(sink.dead), events, dead)
	}
}
