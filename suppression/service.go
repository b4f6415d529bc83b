package suppression

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
)

// Sources of the changes the Service makes.
const (
	SourceAPI    = "api"
	SourceImport = "import"
	SourceErase  = "erase"
	// SourcePurge: the bounce purge setting removed the entry (Purger).
	SourcePurge = "purge"
	// SourceReclassify: bouncer reclassify took the entry off the list
	// (the bounce that put it there is no longer one that does).
	SourceReclassify = "reclassify"
)

// ChangeStore stores list changes: each call one atomic write; a repeated
// change changes nothing (the highest Version of an entry wins).
type ChangeStore interface {
	WriteSuppressions(ctx context.Context, changes []Change) error
}

// Store keeps the lists (sinks/clickhouse implements it). Every method
// takes the account first (WriteSuppressions: each change names its own)
// and touches only that account's entries.
type Store interface {
	ChangeStore
	// Suppressions returns the current entries q selects, newest first.
	Suppressions(ctx context.Context, account string, q Query) ([]Entry, error)
	// CountSuppressions counts the current entries q selects (its Offset
	// and Limit aside).
	CountSuppressions(ctx context.Context, account string, q Query) (uint64, error)
	// EachSuppression calls fn for every current entry of a list in
	// address order, pageSize at a time (0: the store's default).
	EachSuppression(ctx context.Context, account, list string, group int64, pageSize int, fn func(Entry) error) error
	// DeleteAllSuppressions removes, in one statement, every entry of a
	// list whose newest change is older than at.
	DeleteAllSuppressions(ctx context.Context, account, list string, group int64, at time.Time, source string) error
	// SuppressionKeys lists the entries of an address, removed ones too.
	SuppressionKeys(ctx context.Context, account, emailNorm string) ([]Key, error)
	// Erase removes an address from every table; it returns the rows
	// removed per table and the tables it skipped, with why.
	Erase(ctx context.Context, account, emailNorm string, opt EraseOptions) ([]ErasedTable, []string, error)
	WriteErasure(ctx context.Context, e Erasure) error
	// Erasures lists an account's erasure records, newest first.
	Erasures(ctx context.Context, account string, offset, limit uint64) ([]Erasure, error)
}

// Publisher announces changes on the change-log topic that workers'
// indexes and mirroring senders follow, at least once (consumer's
// ChangeWriter implements it).
type Publisher interface {
	PublishChanges(ctx context.Context, changes []Change) error
}

// Service changes the lists the one way that keeps every copy right: write
// to the Store, then announce on the change log (Write). Everything that
// changes a list outside the sink group's events goes through it: the API,
// CSV imports, deletes of a whole list and erasures.
type Service struct {
	store   Store
	changes Publisher
	w       Writer
	classes *enrich.Classifier
	now     func() time.Time
}

// NewService returns a Service over store. changes may be nil: nothing is
// announced (workers then learn of changes only when they restart).
// classifier classifies imported bounces and blocks from their reason;
// nil leaves them unclassified.
func NewService(store Store, changes Publisher, classifier *enrich.Classifier) *Service {
	return &Service{store: store, changes: changes, w: Writer{Store: store, Changes: changes}, classes: classifier, now: time.Now}
}

// Writer is the one write-then-publish rule: it stores changes, then
// announces them. A failure leaves nothing worse than a retry repairs: a
// repeated change is harmless in the store, the change log and every
// index (the highest version wins). The Service and the sink group's
// handler (package pipeline) both write through it.
type Writer struct {
	Store ChangeStore
	// Changes, when set, announces what the store took.
	Changes Publisher
}

// ErrNotAnnounced wraps a publish failure after the store took the
// changes: they are stored but workers and mirrors have not heard of them.
// Writing them again is harmless.
var ErrNotAnnounced = errors.New("stored but not announced on the change log")

// Write stores changes, then announces them (see Writer).
func (w Writer) Write(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	if err := w.Store.WriteSuppressions(ctx, changes); err != nil {
		return fmt.Errorf("write suppressions: %w", err)
	}
	if w.Changes != nil {
		if err := w.Changes.PublishChanges(ctx, changes); err != nil {
			return fmt.Errorf("%w: %w", ErrNotAnnounced, err)
		}
	}
	return nil
}

// Write stores changes, then announces them (see Writer).
func (s *Service) Write(ctx context.Context, changes []Change) error { return s.w.Write(ctx, changes) }

// Suppressions returns the account's current entries q selects.
func (s *Service) Suppressions(ctx context.Context, account string, q Query) ([]Entry, error) {
	return s.store.Suppressions(ctx, account, q)
}

// CountSuppressions counts the account's current entries q selects.
func (s *Service) CountSuppressions(ctx context.Context, account string, q Query) (uint64, error) {
	return s.store.CountSuppressions(ctx, account, q)
}

// WriteSuppressions writes changes of one account (Write).
func (s *Service) WriteSuppressions(ctx context.Context, account string, changes []Change) error {
	for i := range changes {
		changes[i].AccountID = account
	}
	return s.Write(ctx, changes)
}

// deleteAllBatch is how many removals one Write of DeleteAllSuppressions
// carries.
const deleteAllBatch = 5000

// DeleteAllSuppressions removes every current entry of a list as of at.
// With a change log, each removal is written and announced like a single
// delete, so workers' indexes and mirroring senders drop the entries too;
// without one, the store removes them in one statement.
func (s *Service) DeleteAllSuppressions(ctx context.Context, account, list string, group int64, at time.Time) error {
	if s.changes == nil {
		return s.store.DeleteAllSuppressions(ctx, account, list, group, at, SourceAPI)
	}
	var pending []Change
	flush := func() error {
		err := s.Write(ctx, pending)
		pending = pending[:0]
		return err
	}
	err := s.store.EachSuppression(ctx, account, list, group, 0, func(e Entry) error {
		pending = append(pending, Change{AccountID: account, List: list, GroupID: group, Email: e.Email, EmailNorm: e.EmailNorm,
			At: latest(at, e.Created), Deleted: true, Source: SourceAPI}) // an entry dated later: at its own time, so the removal wins
		if len(pending) == deleteAllBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// Imported is the change a row of a SendGrid CSV export makes to a list:
// an addition as of the row's created time (source "import"), a bounce or
// block classified from its reason.
func (s *Service) Imported(account, list string, group int64, r csvlist.Row) Change {
	c := Change{AccountID: account, List: list, GroupID: group, EmailNorm: r.EmailNorm, Email: r.Email,
		At: r.Created, Reason: r.Reason, Status: r.Status, Source: SourceImport}
	if s.classes == nil || c.Reason == "" || (list != ListBounces && list != ListBlocks) {
		return c
	}
	typ := "bounce"
	if list == ListBlocks {
		typ = "blocked"
	}
	if res, err := s.classes.Classify(enrich.Input{Event: "bounce", Type: typ, Reason: c.Reason, Status: c.Status, Email: c.EmailNorm}); err == nil {
		c.Classification, c.ReasonCode = string(res.Classification), string(res.Reason)
	}
	return c
}

// ImportList writes rows to a list in one Write: all of them or, on
// error, possibly stored but not announced (importing again is harmless:
// the same rows get the same versions).
func (s *Service) ImportList(ctx context.Context, account, list string, group int64, rows []csvlist.Row) error {
	changes := make([]Change, len(rows))
	for i, r := range rows {
		changes[i] = s.Imported(account, list, group, r)
	}
	return s.Write(ctx, changes)
}

// ExportList calls fn for every current entry of a list, in address
// order, as a row of SendGrid's CSV export; it stops at fn's error.
func (s *Service) ExportList(ctx context.Context, account, list string, group int64, fn func(csvlist.Row) error) error {
	return s.store.EachSuppression(ctx, account, list, group, 0, func(e Entry) error {
		return fn(csvlist.Row{Email: e.Email, EmailNorm: e.EmailNorm, Created: e.Created, Reason: e.Reason, Status: e.Status})
	})
}

// Erasures lists the account's erasure records, newest first.
func (s *Service) Erasures(ctx context.Context, account string, offset, limit uint64) ([]Erasure, error) {
	return s.store.Erasures(ctx, account, offset, limit)
}

// Erase erases one normalised address of an account (EraseWith, default
// options, now).
func (s *Service) Erase(ctx context.Context, account, emailNorm, requestedBy string) (Erasure, error) {
	return s.EraseWith(ctx, account, emailNorm, requestedBy, EraseOptions{}, s.now())
}

// EraseWith announces the removal of each list entry of the address on
// the change log (when there is one), so workers' indexes and mirroring
// senders drop it, then deletes its rows from every table and stores the
// record, which it returns. Announcing first means a failure leaves the
// store still holding the address (erase again), never an index that
// still suppresses an address the store no longer has.
func (s *Service) EraseWith(ctx context.Context, account, emailNorm, requestedBy string, opt EraseOptions, now time.Time) (Erasure, error) {
	if s.changes != nil {
		keys, err := s.store.SuppressionKeys(ctx, account, emailNorm)
		if err != nil {
			return Erasure{}, err
		}
		var rows []Change
		for _, k := range keys {
			rows = append(rows, Change{AccountID: account, List: k.List, GroupID: k.GroupID,
				EmailNorm: emailNorm, Email: emailNorm, At: latest(now, k.Latest), Deleted: true, Source: SourceErase})
		}
		if len(rows) > 0 {
			if err := s.changes.PublishChanges(ctx, rows); err != nil {
				return Erasure{}, fmt.Errorf("erase: announce the list removals: %w (nothing was deleted; erase again)", err)
			}
		}
	}
	tables, skipped, err := s.store.Erase(ctx, account, emailNorm, opt)
	if err != nil {
		return Erasure{}, err
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Erasure{}, err
	}
	rec := Erasure{AccountID: account, ID: hex.EncodeToString(id[:]), EmailSHA256: EmailSHA256(emailNorm),
		RequestedBy: requestedBy, At: now.UTC().Truncate(time.Second), Tables: tables}
	if err := s.store.WriteErasure(ctx, rec); err != nil {
		return Erasure{}, fmt.Errorf("erase: the address is erased but the record was not stored: %w (erase again to record it)", err)
	}
	rec.Skipped = skipped
	return rec, nil
}

// latest is the later of two times: a removal is stamped no earlier than
// the entry's newest change, so a delete always takes effect.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// ImportOptions tune ImportCSV.
type ImportOptions struct {
	// Location is the zone of created times written without one; default
	// UTC.
	Location *time.Location
	// Now is the created time of rows that have none; default the clock.
	Now time.Time
	// Batch is how many rows one Write carries; default 5000.
	Batch int
	// Bad, when set, hears of each row skipped (its line and why).
	Bad func(line int, msg string)
	// Progress, when set, hears after each batch how far the import is.
	Progress func(imported, skipped, line int)
}

// ImportCSV reads a SendGrid CSV export (package csvlist) and adds its rows
// to a list in batches, each one Write: stored, then announced. A row that
// is not an address or whose created time cannot be read is skipped and
// reported, never fatal. On error the batches before are imported;
// importing the file again is harmless (the same rows get the same
// versions).
func (s *Service) ImportCSV(ctx context.Context, in io.Reader, account, list string, group int64, opt ImportOptions) (imported, skipped int, err error) {
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	if opt.Now.IsZero() {
		opt.Now = s.now().UTC()
	}
	if opt.Batch <= 0 {
		opt.Batch = 5000
	}
	r, err := csvlist.NewReader(in, opt.Location, opt.Now)
	if err != nil {
		return 0, 0, err
	}
	var pending []Change
	lastLine := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := s.Write(ctx, pending); errors.Is(err, ErrNotAnnounced) {
			return fmt.Errorf("after line %d: %w (importing the file again is safe)", lastLine, err)
		} else if err != nil {
			return fmt.Errorf("after line %d: %w (rows up to the previous batch are imported; importing the file again is safe)", lastLine, err)
		}
		imported += len(pending)
		pending = pending[:0]
		if opt.Progress != nil {
			opt.Progress(imported, skipped, lastLine)
		}
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return imported, skipped, err
		}
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		var bad *csvlist.RowError
		if errors.As(err, &bad) {
			skipped++
			if opt.Bad != nil {
				opt.Bad(bad.Line, bad.Msg)
			}
			continue
		}
		if err != nil {
			return imported, skipped, err
		}
		lastLine = row.Line
		pending = append(pending, s.Imported(account, list, group, row))
		if len(pending) >= opt.Batch {
			if err := flush(); err != nil {
				return imported, skipped, err
			}
		}
	}
	return imported, skipped, flush()
}
