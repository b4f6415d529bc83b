// Package reclassify re-runs the current classification rules over stored
// bounces and corrects what the old classification decided: the events'
// classification, the suppression lists and, through the store, the stats.
//
// # How a re-classification is stored and read
//
// The events table keeps one classification per event (bounce_type,
// bounce_classification, reason_code, rule, decided_by); a
// re-classification replaces it in place (sinks/clickhouse: ALTER TABLE
// events UPDATE ... of the changed rows, identified by their Kafka
// identity). Readers keep reading the events table as before and see the
// new classification once the store returns; the old one is gone (the
// dry run shows it, and rule ids say which rule decided). The stats
// rollups of the days touched are marked before the update and again
// after it, as an erasure marks them, so no build that counted the old
// classification is read afterwards (docs/analytics.md).
//
// # The lists
//
// An event's list is what the sink would put its recipient on
// (pipeline.ListOf: invalid_emails, bounces, blocks or none). When a
// re-classification moves an event from list A to list B:
//
//   - B gains the entry as the sink would have added it: version 2*t for
//     the event's time t, source "event:<sg_event_id>", so a user's later
//     delete (a higher version) still wins, and an earlier one does not.
//   - A loses the entry with a removal at version 2*t+1 (source
//     "reclassify"), unless another change keeps it: a stored bounce of the
//     address whose list (after re-classification) is A, or an addition
//     (API, import, policy, an event no longer stored), newer than every
//     removal still stored. A change newer than 2*t+1 (a later delete or
//     addition) makes the removal needless: it is not written.
//
// ClickHouse merges superseded versions of an entry away, so a removal
// older than the re-classified bounce may be gone: then an older bounce of
// the address is taken to keep the entry (it stays listed).
//
// # Exactly once
//
// A run goes through the window one UTC day at a time and applies changes
// in chunks of at most Config.Chunk events: first the list changes
// (stored, then published on the change log: suppression.Writer), then
// the events' new classification (the store returns once every replica
// holds it). Only the second step makes an event stop differing from the
// rules, so a run killed anywhere, run again, finds every event it had not
// finished and makes the same list changes with the same versions again:
// repeating a change is harmless in the store, the change log and every
// index (the highest version wins), and an event whose update was stored
// is not touched again. Memory is bounded by the chunk, the diff's
// distinct (old, new) pairs and, per chunk, the stored bounces and list
// rows of its addresses.
package reclassify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// Class is a stored classification.
type Class struct {
	BounceType     string `json:"bounce_type"`
	Classification string `json:"bounce_classification"`
	ReasonCode     string `json:"reason_code"`
	Rule           string `json:"rule"`
	DecidedBy      string `json:"decided_by"`
}

// ID is an event's identity in the events table.
type ID struct {
	Topic     string
	Partition int32
	Offset    int64
	Index     int32
}

// Event is a stored bounce (event "bounce", of type bounce or blocked).
type Event struct {
	ID
	// Key is the store's own name of the row (opaque; StoreClasses uses it).
	Key                         uint64
	AccountID, Email, EmailNorm string
	Type                        string
	SGEventID                   string
	Reason, Response, Status    string
	Timestamp                   int64
	AddressValid                bool
	// Class is the classification stored.
	Class Class
}

// Change is a stored event and its new classification.
type Change struct {
	Event Event
	New   Class
}

// ListRow is one stored change of a list entry (not only the newest).
type ListRow struct {
	List      string
	EmailNorm string
	Version   uint64
	Deleted   bool
	Source    string
}

// Window selects the stored bounces to re-classify.
type Window struct {
	// Account limits the run to one account; "" is every account.
	Account string
	// Since <= timestamp < Until.
	Since, Until time.Time
}

func (w Window) holds(e *Event) bool {
	return (w.Account == "" || w.Account == e.AccountID) && e.Timestamp >= w.Since.Unix() && e.Timestamp < w.Until.Unix()
}

// Store reads stored bounces and list rows and stores new classifications
// (sinks/clickhouse implements it).
type Store interface {
	// EachBounce calls fn for every stored bounce of w (not derived
	// events), in no particular order. An error of fn stops it and is
	// returned.
	EachBounce(ctx context.Context, w Window, fn func(*Event) error) error
	// AddressBounces returns every stored bounce of the given (normalised)
	// addresses of one account, whatever its time.
	AddressBounces(ctx context.Context, account string, emails []string) ([]Event, error)
	// ListRows returns the stored changes of the bounces, blocks and
	// invalid_emails entries of the addresses of one account.
	ListRows(ctx context.Context, account string, emails []string) ([]ListRow, error)
	// StoreClasses replaces the classification of the changed events and
	// returns once every reader sees the new one (the stats rollups of
	// their days included). Storing the same changes again is harmless.
	StoreClasses(ctx context.Context, changes []Change) error
}

// Config is what a run needs.
type Config struct {
	// Classifier holds the current rules (built-in and operator rules).
	Classifier *enrich.Classifier
	Store      Store
	// Lists stores list changes and announces them on the change log.
	Lists suppression.Writer
	// Chunk is how many changed events one apply step stores at most;
	// default 1000.
	Chunk int
	// Progress, when set, is called after each day of the window and
	// each apply step.
	Progress func(Progress)
}

// Validate fills defaults and names a missing field.
func (c *Config) Validate() error {
	switch {
	case c.Classifier == nil:
		return errors.New("reclassify: Config.Classifier is nil")
	case c.Store == nil:
		return errors.New("reclassify: Config.Store is nil")
	case c.Lists.Store == nil:
		return errors.New("reclassify: Config.Lists.Store is nil")
	}
	if c.Chunk <= 0 {
		c.Chunk = 1000
	}
	return nil
}

// Progress says how far a run is.
type Progress struct {
	Day            time.Time // the day being read
	DaysDone, Days int
	Read, Changed  uint64 // bounces read (days finished), events changed so far
	ListChanges    uint64 // list changes written so far
	Applying       bool   // an apply step just finished
	Elapsed        time.Duration
	started        time.Time
}

// DiffKey is one (old, new) pair of the diff.
type DiffKey struct {
	Old, New Class
}

// DiffRow counts the events of one (old, new) pair.
type DiffRow struct {
	DiffKey
	Count uint64 `json:"count"`
	// Examples are up to three distinct texts of the pair.
	Examples []string `json:"examples"`
}

// Report is what a run found (a dry run) or did.
type Report struct {
	Window Window `json:"-"`
	// Read counts the stored bounces of the window; Changed those whose
	// classification, reason or bounce type changes; RuleOnly those whose
	// rule id or decided_by alone changes (stored too when applied).
	Read, Changed, RuleOnly uint64
	// Rows are the (old, new) pairs, most frequent first.
	Rows []DiffRow
	// Moves counts events whose list changes ("bounces -> blocks"; "-"
	// for none).
	Moves map[string]uint64
	// ListChanges counts the list changes written (apply only).
	ListChanges uint64
	Applied     bool
}

type tally struct {
	rows  map[DiffKey]*DiffRow
	moves map[string]uint64
	rep   Report
}

func newTally() *tally { return &tally{rows: map[DiffKey]*DiffRow{}, moves: map[string]uint64{}} }

func (t *tally) add(c *Change, oldList, newList string) {
	if !classChanged(c.Event.Class, c.New) {
		t.rep.RuleOnly++
		return
	}
	t.rep.Changed++
	k := DiffKey{Old: c.Event.Class, New: c.New}
	k.Old.DecidedBy, k.New.DecidedBy = "", ""
	k.Old.Rule = ""
	r := t.rows[k]
	if r == nil {
		r = &DiffRow{DiffKey: k}
		t.rows[k] = r
	}
	r.Count++
	text := c.Event.Reason
	if text == "" {
		text = c.Event.Response
	}
	if len(r.Examples) < 3 && !slices.Contains(r.Examples, text) {
		r.Examples = append(r.Examples, text)
	}
	if oldList != newList {
		t.moves[dash(oldList)+" -> "+dash(newList)]++
	}
}

func (t *tally) report() Report {
	rep := t.rep
	rep.Moves = t.moves
	for _, r := range t.rows {
		rep.Rows = append(rep.Rows, *r)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := rep.Rows[i], rep.Rows[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return fmt.Sprint(a.DiffKey) < fmt.Sprint(b.DiffKey)
	})
	return rep
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func classChanged(a, b Class) bool {
	return a.BounceType != b.BounceType || a.Classification != b.Classification || a.ReasonCode != b.ReasonCode
}

// Classify returns the classification the current rules give a stored
// bounce.
func Classify(c *enrich.Classifier, e *Event) Class {
	res, err := c.Classify(enrich.Input{Event: "bounce", Type: e.Type, Reason: e.Reason, Response: e.Response, Status: e.Status, Email: e.Email})
	if err != nil {
		return e.Class
	}
	return Class{BounceType: string(res.BounceType), Classification: string(res.Classification), ReasonCode: string(res.Reason),
		Rule: res.Rule, DecidedBy: res.DecidedBy}
}

// ListOf is the list a bounce with classification c puts its recipient on
// (pipeline.ListOf), or "".
func ListOf(e *Event, c Class) string {
	row := pipeline.Row{
		Event:  schemas.Event{Event: schemas.EventBounce, Type: e.Type, AddressValid: e.AddressValid},
		Bounce: &enrich.Result{BounceType: enrich.BounceType(c.BounceType), Reason: enrich.Reason(c.ReasonCode)},
	}
	return pipeline.ListOf(&row)
}

// errFull stops a pass over a day when a chunk is full.
var errFull = errors.New("chunk full")

// Run re-classifies the window's stored bounces: a dry run (apply false)
// only reports the diff; otherwise the changes are stored chunk by chunk
// (see the package comment).
func Run(ctx context.Context, cfg Config, w Window, apply bool) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if !w.Until.After(w.Since) {
		return Report{}, fmt.Errorf("reclassify: the window %v to %v is empty", w.Since, w.Until)
	}
	t := newTally()
	prog := Progress{started: time.Now()}
	days := splitDays(w)
	prog.Days = len(days)
	report := func(applying bool) {
		if cfg.Progress != nil {
			prog.Applying, prog.Elapsed = applying, time.Since(prog.started)
			prog.Changed, prog.ListChanges = t.rep.Changed+t.rep.RuleOnly, t.rep.ListChanges
			cfg.Progress(prog)
		}
	}
	// pending holds changes not stored yet, of finished days and of the
	// day being read; it is stored when it holds cfg.Chunk changes (then
	// the day being read is read again from its start: what was stored no
	// longer differs) and at the end, so the number of updates follows the
	// changes, not the days.
	var pending []Change
	var last map[ID]bool
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		ids := make(map[ID]bool, len(pending))
		for _, c := range pending {
			if last[c.Event.ID] {
				return fmt.Errorf("reclassify: event %s/%d/%d/%d still holds its old classification after it was stored: is a mutation of events stuck? (system.mutations)",
					c.Event.Topic, c.Event.Partition, c.Event.Offset, c.Event.Index)
			}
			ids[c.Event.ID] = true
		}
		if err := applyChunk(ctx, &cfg, w, pending, t); err != nil {
			return err
		}
		report(true)
		last, pending = ids, nil
		return nil
	}
	for i, day := range days {
		prog.Day = day.Since.UTC().Truncate(24 * time.Hour)
		for {
			mark := len(pending)
			var read uint64
			err := cfg.Store.EachBounce(ctx, day, func(e *Event) error {
				read++
				c := Change{Event: *e, New: Classify(cfg.Classifier, e)}
				if c.New == e.Class {
					return nil
				}
				if !apply {
					t.add(&c, ListOf(e, e.Class), ListOf(e, c.New))
					return nil
				}
				pending = append(pending, c)
				if len(pending) >= cfg.Chunk {
					return errFull
				}
				return nil
			})
			if err != nil && !errors.Is(err, errFull) {
				return t.report(), err
			}
			if err == nil {
				t.rep.Read += read // the whole day was read
				break
			}
			if len(pending) == mark {
				return t.report(), errors.New("reclassify: internal error: a full chunk without a change of this day")
			}
			if err := flush(); err != nil {
				return t.report(), err
			}
		}
		prog.DaysDone, prog.Read = i+1, t.rep.Read
		report(false)
	}
	if err := flush(); err != nil {
		return t.report(), err
	}
	rep := t.report()
	rep.Window, rep.Applied = w, apply
	return rep, nil
}

// splitDays cuts w at UTC midnights.
func splitDays(w Window) []Window {
	var out []Window
	for from := w.Since; from.Before(w.Until); {
		next := from.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		if next.After(w.Until) {
			next = w.Until
		}
		out = append(out, Window{Account: w.Account, Since: from, Until: next})
		from = next
	}
	return out
}

// applyChunk writes the list changes of chunk, then its classifications.
func applyChunk(ctx context.Context, cfg *Config, w Window, chunk []Change, t *tally) error {
	var lists []suppression.Change
	byAccount := map[string][]*Change{}
	for i := range chunk {
		c := &chunk[i]
		oldList, newList := ListOf(&c.Event, c.Event.Class), ListOf(&c.Event, c.New)
		t.add(c, oldList, newList)
		if oldList != newList {
			byAccount[c.Event.AccountID] = append(byAccount[c.Event.AccountID], c)
		}
	}
	accounts := make([]string, 0, len(byAccount))
	for a := range byAccount {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	for _, account := range accounts {
		changes, err := listChanges(ctx, cfg, w, account, byAccount[account])
		if err != nil {
			return err
		}
		lists = append(lists, changes...)
	}
	if err := cfg.Lists.Write(ctx, lists); err != nil {
		return fmt.Errorf("reclassify: list changes: %w", err)
	}
	t.rep.ListChanges += uint64(len(lists))
	if err := cfg.Store.StoreClasses(ctx, chunk); err != nil {
		return fmt.Errorf("reclassify: store the new classifications: %w", err)
	}
	return nil
}

// listChanges decides the list changes of one account's moved events.
func listChanges(ctx context.Context, cfg *Config, w Window, account string, moved []*Change) ([]suppression.Change, error) {
	var emails []string
	for _, c := range moved {
		emails = append(emails, c.Event.EmailNorm)
	}
	slices.Sort(emails)
	emails = slices.Compact(emails)
	stored, err := cfg.Store.AddressBounces(ctx, account, emails)
	if err != nil {
		return nil, err
	}
	rows, err := cfg.Store.ListRows(ctx, account, emails)
	if err != nil {
		return nil, err
	}
	// The list of every stored bounce of the addresses once this run is
	// done: the current rules' inside the window, the stored one outside.
	final := map[ID]string{}
	byAddr := map[string][]Bounce{}
	for i := range stored {
		e := &stored[i]
		class := e.Class
		if w.holds(e) {
			class = Classify(cfg.Classifier, e)
		}
		final[e.ID] = ListOf(e, class)
		byAddr[e.EmailNorm] = append(byAddr[e.EmailNorm], Bounce{ID: e.ID, At: e.Timestamp, List: final[e.ID], SGEventID: e.SGEventID})
	}
	rowsByAddr := map[string][]ListRow{}
	for _, r := range rows {
		rowsByAddr[r.EmailNorm] = append(rowsByAddr[r.EmailNorm], r)
	}
	movedByAddr := map[string][]Move{}
	for _, c := range moved {
		e := &c.Event
		m := Move{Bounce: Bounce{ID: e.ID, At: e.Timestamp, List: ListOf(e, c.New), SGEventID: e.SGEventID}, From: ListOf(e, e.Class), Email: e.Email,
			Reason: e.Reason, Status: e.Status, New: c.New}
		movedByAddr[e.EmailNorm] = append(movedByAddr[e.EmailNorm], m)
	}
	var out []suppression.Change
	for _, email := range emails {
		out = append(out, Decide(account, email, movedByAddr[email], byAddr[email], rowsByAddr[email])...)
	}
	return out, nil
}

// Bounce is a stored bounce of an address with the list it puts the
// address on once the run is done.
type Bounce struct {
	ID        ID
	At        int64
	List      string
	SGEventID string
}

// Move is a re-classified bounce that changes lists: From is its list
// before, Bounce.List after.
type Move struct {
	Bounce
	From   string
	Email  string
	Reason string
	Status string
	New    Class
}

// Decide returns the list changes of one address of one account (see the
// package comment): moves are the address's re-classified bounces that
// change lists, bounces all its stored bounces (with their lists after the
// run; moves among them), rows the stored changes of its entries.
func Decide(account, emailNorm string, moves []Move, bounces []Bounce, rows []ListRow) []suppression.Change {
	moving := map[ID]bool{}
	lists := map[string]bool{}
	for _, m := range moves {
		moving[m.ID] = true
		lists[m.From], lists[m.List] = true, true
	}
	delete(lists, "")
	names := make([]string, 0, len(lists))
	for l := range lists {
		names = append(names, l)
	}
	sort.Strings(names)
	var out []suppression.Change
	for _, list := range names {
		var latest, removed uint64
		var latestRow *ListRow
		for i := range rows {
			r := &rows[i]
			if r.List != list {
				continue
			}
			if latestRow == nil || r.Version > latest {
				latest, latestRow = r.Version, r
			}
			if r.Deleted && r.Version > removed {
				removed = r.Version
			}
		}
		var join, leave *Move
		for i := range moves {
			m := &moves[i]
			if m.List == list && (join == nil || m.At > join.At) {
				join = m
			}
			if m.From == list && (leave == nil || m.At > leave.At) {
				leave = m
			}
		}
		if join != nil {
			c := suppression.Change{AccountID: account, List: list, EmailNorm: emailNorm, Email: join.Email,
				At: time.Unix(join.At, 0).UTC(), Reason: join.Reason, Status: join.Status,
				Classification: join.New.Classification, ReasonCode: join.New.ReasonCode, Source: "event:" + join.SGEventID}
			v := c.Version()
			if latestRow != nil && latestRow.Deleted && latestRow.Source == suppression.SourceReclassify && latest == v+1 {
				// An earlier run took this very bounce off the list (its
				// removal is one above the addition): add it back one
				// second later, so the addition wins.
				c.At = c.At.Add(time.Second)
				v = c.Version()
			}
			if latest <= v {
				out = append(out, c)
			}
			continue // the address is (again) on the list by this bounce
		}
		if leave == nil {
			continue
		}
		v := uint64(max(leave.At, 0))*2 + 1
		if latest > v {
			continue // a later change decides
		}
		kept := false
		for _, b := range bounces {
			if !moving[b.ID] && b.List == list && uint64(max(b.At, 0))*2 > removed {
				kept = true
			}
		}
		stored := eventIDs(bounces)
		for _, r := range rows {
			if r.List != list || r.Deleted || r.Version <= removed {
				continue
			}
			if id, ok := strings.CutPrefix(r.Source, "event:"); ok && stored[id] {
				continue // a stored bounce: its list after the run decides (above)
			}
			kept = true
		}
		if kept {
			continue
		}
		out = append(out, suppression.Change{AccountID: account, List: list, EmailNorm: emailNorm, Email: leave.Email,
			At: time.Unix(leave.At, 0).UTC(), Reason: "re-classified as " + leave.New.ReasonCode + " by rule " + leave.New.Rule,
			Status: leave.Status, Classification: leave.New.Classification, ReasonCode: leave.New.ReasonCode,
			Deleted: true, Source: suppression.SourceReclassify})
	}
	return out
}

func eventIDs(bounces []Bounce) map[string]bool {
	m := make(map[string]bool, len(bounces))
	for _, b := range bounces {
		if b.SGEventID != "" {
			m[b.SGEventID] = true
		}
	}
	return m
}
