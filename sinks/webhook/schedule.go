package webhook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/bouncer-mail/bouncer/internal/retry"
)

// DefaultDelays is the retry schedule after the first attempt, like
// Standard Webhooks': ten attempts in about three and a half days.
var DefaultDelays = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
	10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
}

// Schedule says when failed batches are tried again. Each delay is one
// retry tier (a Kafka topic whose consumer waits until a batch is due).
// Its pauses are a backoff.BackOff (BackOff), the kind internal/retry runs;
// the position in it is a batch's attempt count, kept in the batch's
// record, so a schedule survives a worker's restart.
type Schedule struct {
	// Delays are the waits after the 1st, 2nd, ... failed attempt; a batch
	// that failed len(Delays)+1 attempts is given up. Default DefaultDelays.
	Delays []time.Duration
	// Jitter spreads each delay by up to this fraction either way, so
	// batches that failed together are not retried together; default 0.1.
	Jitter float64
}

// ParseDelays reads a comma-separated list of durations ("5s,5m,30m").
func ParseDelays(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("retry schedule %q: %q is not a positive duration like 5s or 30m", s, p)
		}
		if len(out) > 0 && d < out[len(out)-1] {
			return nil, fmt.Errorf("retry schedule %q: delays must not decrease (%s after %s)", s, d, out[len(out)-1])
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("retry schedule %q: want at least one delay", s)
	}
	return out, nil
}

func (s *Schedule) validate() error {
	if len(s.Delays) == 0 {
		s.Delays = DefaultDelays
	}
	if s.Jitter == 0 {
		s.Jitter = 0.1
	}
	if s.Jitter < 0 || s.Jitter >= 1 {
		return fmt.Errorf("webhook: schedule jitter %v: want 0 <= jitter < 1", s.Jitter)
	}
	for i, d := range s.Delays {
		if d <= 0 || (i > 0 && d < s.Delays[i-1]) {
			return fmt.Errorf("webhook: schedule delays must be positive and not decrease: %v", s.Delays)
		}
	}
	return nil
}

// TierName is the short name of a delay for topic names: "5s", "30m", "2h".
func TierName(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// BackOff returns the schedule's pauses for a batch that has made attempts
// attempts (0 when it was parked without one): its NextBackOff is the
// jittered wait before the next attempt, backoff.Stop once the schedule is
// exhausted. rnd makes the jitter (nil: math/rand/v2's).
func (s *Schedule) BackOff(attempts int, rnd *rand.Rand) *retry.Steps {
	b := &retry.Steps{Delays: s.Delays, Jitter: s.Jitter}
	if rnd != nil {
		b.Rand = rnd.Float64
	}
	b.Skip(attempts - 1)
	return b
}

// next plans the retry of a batch that has made attempts attempts (0 when
// it was parked without one): the tier and due time, at least retryAfter
// from now; ok is false when the schedule is exhausted.
func (s *Schedule) next(attempts int, retryAfter time.Duration, now time.Time, rnd *rand.Rand) (tier int, due time.Time, ok bool) {
	b := s.BackOff(attempts, rnd)
	tier = b.Taken()
	d := b.NextBackOff()
	if d == backoff.Stop {
		return 0, time.Time{}, false
	}
	if retryAfter > d {
		d = min(retryAfter, s.Delays[len(s.Delays)-1])
		// Park it in the longest tier not longer than the wait, so it
		// holds up the batches behind it for less than that tier's delay.
		for tier+1 < len(s.Delays) && s.Delays[tier+1] <= d {
			tier++
		}
	}
	return tier, now.Add(d), true
}
