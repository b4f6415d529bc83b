package suppression

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// PurgeSettings lists the bounce purge settings that are enabled
// (sinks/clickhouse implements it).
type PurgeSettings interface {
	EnabledBouncePurges(ctx context.Context) ([]accounts.BouncePurge, error)
}

// Purger carries out the accounts' bounce_purge settings: each run removes
// from an account's bounces list every hard bounce older than its
// HardDays and every soft one (status 4.x.x) older than its SoftDays,
// through the Service (stored, then announced on the change log, like any
// other removal).
//
// The removal of an entry created at C with N days is stamped C + N days,
// not the time of the run: every run, in every process, writes the very
// same removal (several API processes purging at once only repeat work),
// and a bounce dated after C + N days puts the address back, whenever it
// arrives.
type Purger struct {
	Service  *Service
	Settings PurgeSettings
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Interval is the time between runs of Run; default 1h.
	Interval time.Duration
	// Log hears of each run that removed something and of failures;
	// default: discard.
	Log *slog.Logger
}

// purgeBatch is how many removals one Write carries.
const purgeBatch = 1000

// RunOnce purges every enabled account once and returns how many entries
// it removed. An account that fails is reported in the error; the others
// are purged all the same.
func (p *Purger) RunOnce(ctx context.Context) (int, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	settings, err := p.Settings.EnabledBouncePurges(ctx)
	if err != nil {
		return 0, fmt.Errorf("bounce purge: read the settings: %w", err)
	}
	at := now()
	removed := 0
	var errs []error
	for _, s := range settings {
		for _, kind := range []struct {
			name string
			days int
		}{{"hard", s.HardDays}, {"soft", s.SoftDays}} {
			if kind.days <= 0 {
				continue
			}
			n, err := p.purge(ctx, s.AccountID, kind.name, kind.days, at)
			removed += n
			if err != nil {
				errs = append(errs, fmt.Errorf("bounce purge of %s's %s bounces: %w", s.AccountID, kind.name, err))
			}
		}
	}
	return removed, errors.Join(errs...)
}

// purge removes an account's bounces of one kind created more than days
// before now.
func (p *Purger) purge(ctx context.Context, account, kind string, days int, now time.Time) (int, error) {
	age := time.Duration(days) * 24 * time.Hour
	cutoff := now.Add(-age).Unix()
	if cutoff < 1 {
		return 0, nil
	}
	q := Query{List: ListBounces, Bounce: kind, To: uint32(min(cutoff, 1<<32-1)), Limit: purgeBatch}
	removed := 0
	seen := map[string]bool{}
	for {
		es, err := p.Service.Suppressions(ctx, account, q)
		if err != nil || len(es) == 0 {
			return removed, err
		}
		changes := make([]Change, len(es))
		for i, e := range es {
			if seen[e.EmailNorm] {
				return removed, fmt.Errorf("%s is still listed after its removal", e.EmailNorm)
			}
			seen[e.EmailNorm] = true
			changes[i] = Change{AccountID: account, List: ListBounces, Email: e.Email, EmailNorm: e.EmailNorm,
				At: e.Created.Add(age), Deleted: true, Source: SourcePurge}
		}
		if err := p.Service.Write(ctx, changes); err != nil {
			return removed, err
		}
		removed += len(changes)
	}
}

// Run purges every Interval until ctx ends (the first run right away).
func (p *Purger) Run(ctx context.Context) {
	every := p.Interval
	if every <= 0 {
		every = time.Hour
	}
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := p.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			log.Error("bounce purge failed (the next run retries)", "err", err, "removed", n)
		} else if n > 0 {
			log.Info("bounce purge", "removed", n, "took", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
