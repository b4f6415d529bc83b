// Package retry is bouncer's one way of trying an operation again: jittered
// exponential backoff (github.com/cenkalti/backoff/v4), a give-up bound, and
// a clock tests can control. Transports and stores only say whether an
// error is worth another try (wrap it with Permanent when it is not);
// callers choose a Policy and what to log or count on each failure.
//
// # Contract
//
//   - Do calls op until it returns nil, returns a Permanent error, the
//     policy gives up, or ctx ends; it never calls op again after one of
//     these.
//   - Do never calls op concurrently, and op's first call is immediate.
//   - Do returns nil after a success, else op's last error (unwrapped from
//     Permanent): the caller sees why the operation failed rather than why
//     Do stopped trying (ctx.Err() tells that).
//   - A pause is never cut short but by ctx; Notify is told of every
//     failure that is followed by a pause, before the pause.
//   - An error wrapped with Progressed starts the pauses over (the
//     give-up bounds count from the start all the same).
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
)

// Policy says how long to pause between attempts and when to give up.
// The zero Policy pauses 100ms, then 1.5 times longer each time up to 5s,
// each pause jittered by ±50%, and never gives up.
type Policy struct {
	// Pauses, when set, makes the pauses instead of Initial, Max,
	// Multiplier and Jitter (a Steps schedule, say): Do calls it once, at
	// the first failure, and Resets what it returns on Progressed.
	// GiveUpAfter, GiveUpIf and Notify apply all the same.
	Pauses func() backoff.BackOff
	// Initial is the first pause; default 100ms.
	Initial time.Duration
	// Max caps a pause before jitter; default 5s (at least Initial).
	Max time.Duration
	// Multiplier grows the pause after each failure; default 1.5. 1 keeps
	// it steady.
	Multiplier float64
	// Jitter spreads each pause by up to this fraction either way, so
	// callers that failed together do not retry together; default 0.5.
	// NoJitter pauses exactly.
	Jitter float64
	// GiveUpAfter ends the retries once this much time passed since the
	// first attempt; 0: never (until ctx ends).
	GiveUpAfter time.Duration
	// GiveUpIf, when set, is asked before each pause and ends the retries
	// when it says so: a caller's own bound (one that spans several calls
	// of Do, on the caller's clock).
	GiveUpIf func(pause time.Duration) bool
	// Notify, when set, is told of each failure that will be retried and
	// of the pause before the retry.
	Notify func(err error, pause time.Duration)
	// Clock times the pauses and the give-up bounds; default the real
	// clock.
	Clock clockwork.Clock
}

// NoJitter is the Jitter of a policy whose pauses are exact.
const NoJitter = -1

// Every is a policy of steady pauses of d, without jitter, that never
// gives up: for waiting out an outage of something the caller cannot do
// without.
func Every(d time.Duration) Policy {
	return Policy{Initial: d, Max: d, Multiplier: 1, Jitter: NoJitter}
}

// Permanent marks err as not worth retrying: Do returns it (unwrapped) at
// once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return backoff.Permanent(err)
}

// Progressed marks err as a failure after progress (a consumer that
// committed some batches of a window before one failed): Do starts its
// pauses over from Policy.Initial. Progressed(nil) is nil.
func Progressed(err error) error {
	if err == nil {
		return nil
	}
	return &progressError{err}
}

type progressError struct{ err error }

func (e *progressError) Error() string { return e.err.Error() }
func (e *progressError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *backoff.PermanentError
	return errors.As(err, &p)
}

// clockAdapter lets backoff read the policy's clock.
type clockAdapter struct{ c clockwork.Clock }

func (a clockAdapter) Now() time.Time { return a.c.Now() }

// Backoff returns the pauses of p as a backoff.BackOff (for callers that
// drive their own loop); GiveUpIf and Notify are Do's alone. GiveUpAfter
// counts from now; Reset starts the pauses over, not that bound.
func (p Policy) Backoff() backoff.BackOff {
	clock := p.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return p.backoff(clock, clock.Now())
}

func (p Policy) backoff(clock clockwork.Clock, start time.Time) backoff.BackOff {
	var b backoff.BackOff
	if p.Pauses != nil {
		b = p.Pauses()
	} else {
		e := &backoff.ExponentialBackOff{
			InitialInterval:     100 * time.Millisecond,
			RandomizationFactor: backoff.DefaultRandomizationFactor,
			Multiplier:          backoff.DefaultMultiplier,
			MaxInterval:         5 * time.Second,
			Stop:                backoff.Stop,
			Clock:               clockAdapter{clock},
		}
		if p.Initial > 0 {
			e.InitialInterval = p.Initial
		}
		if p.Max > 0 {
			e.MaxInterval = p.Max
		}
		e.MaxInterval = max(e.MaxInterval, e.InitialInterval)
		if p.Multiplier >= 1 {
			e.Multiplier = p.Multiplier
		}
		switch {
		case p.Jitter < 0:
			e.RandomizationFactor = 0
		case p.Jitter > 0:
			e.RandomizationFactor = min(p.Jitter, 1)
		}
		b = e
	}
	b.Reset()
	if p.GiveUpAfter > 0 {
		b = &giveUpAfter{BackOff: b, after: p.GiveUpAfter, clock: clock, start: start}
	}
	return b
}

// giveUpAfter stops a BackOff's pauses when the next one would end after
// the bound (counted from start, which Reset keeps).
type giveUpAfter struct {
	backoff.BackOff
	after time.Duration
	clock clockwork.Clock
	start time.Time
}

func (g *giveUpAfter) NextBackOff() time.Duration {
	next := g.BackOff.NextBackOff()
	if next == backoff.Stop || g.clock.Since(g.start)+next > g.after {
		return backoff.Stop
	}
	return next
}

// Do runs op as p says; see the package doc for when it stops and what
// it returns. A first call that succeeds costs no more than calling op:
// the pauses are made at the first failure.
func Do(ctx context.Context, p Policy, op func() error) error {
	clock := p.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	var start time.Time
	if p.GiveUpAfter > 0 {
		start = clock.Now()
	}
	err := op()
	if err == nil {
		return nil
	}
	b := p.backoff(clock, start)
	for ; ; err = op() {
		if err == nil {
			return nil
		}
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			return perm.Err
		}
		var prog *progressError
		if errors.As(err, &prog) {
			err = prog.err
			b.Reset()
		}
		pause := b.NextBackOff()
		if pause == backoff.Stop || (p.GiveUpIf != nil && p.GiveUpIf(pause)) || ctx.Err() != nil {
			return err
		}
		if p.Notify != nil {
			p.Notify(err, pause)
		}
		if !Sleep(ctx, clock, pause) {
			return err
		}
	}
}

// Sleep waits d on clock (nil: the real one) or until ctx ends; it reports
// whether d passed.
func Sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}
