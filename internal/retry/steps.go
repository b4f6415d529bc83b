package retry

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Steps is a backoff.BackOff of a fixed list of pauses, as a retry
// schedule of named tiers is (5s, 5m, 30m, ...): after Reset, the n-th
// NextBackOff returns Delays[n] spread by up to Jitter either way, and
// backoff.Stop once the list is used up. Give it to Do through
// Policy.Pauses. A Steps is not safe for concurrent use.
type Steps struct {
	// Delays are the pauses, in order.
	Delays []time.Duration
	// Jitter spreads each pause by up to this fraction either way; 0:
	// exact. At most 1.
	Jitter float64
	// Rand returns a number in [0, 1) for the jitter; default
	// math/rand/v2's Float64.
	Rand func() float64

	n int // pauses taken since Reset
}

var _ backoff.BackOff = (*Steps)(nil)

// NextBackOff returns the next pause, or backoff.Stop after the last.
func (s *Steps) NextBackOff() time.Duration {
	if s.n >= len(s.Delays) {
		return backoff.Stop
	}
	d := s.Delays[s.n]
	s.n++
	if s.Jitter > 0 {
		r := s.Rand
		if r == nil {
			r = rand.Float64
		}
		d += time.Duration((r()*2 - 1) * min(s.Jitter, 1) * float64(d))
	}
	return d
}

// Reset starts the pauses over from the first.
func (s *Steps) Reset() { s.n = 0 }

// Skip moves past the next n pauses without taking them: for a schedule
// whose position is kept elsewhere (the attempts a batch made, written in
// its record), so the next NextBackOff is the pause after them.
func (s *Steps) Skip(n int) { s.n = min(s.n+max(n, 0), len(s.Delays)) }

// Taken is how many pauses were taken or skipped since Reset.
func (s *Steps) Taken() int { return s.n }
