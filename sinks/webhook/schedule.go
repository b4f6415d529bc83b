package webhook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// DefaultDelays is the retry schedule after the first attempt, like
// Standard Webhooks': ten attempts in about three and a half days.
var DefaultDelays = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
	10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
}

// Schedule says when failed batches are tried again. Each delay is one
// retry tier (a Kafka topic whose consumer waits until a batch is due).
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

// next plans the retry of a batch that has made attempts attempts (0 when
// it was parked without one): the tier and due time, at least retryAfter
// from now; ok is false when the schedule is exhausted.
func (s *Schedule) next(attempts int, retryAfter time.Duration, now time.Time, rnd *rand.Rand) (tier int, due time.Time, ok bool) {
	tier = max(attempts-1, 0)
	if tier >= len(s.Delays) {
		return 0, time.Time{}, false
	}
	d := s.Delays[tier]
	if s.Jitter > 0 {
		d += time.Duration((rnd.Float64()*2 - 1) * s.Jitter * float64(d))
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
