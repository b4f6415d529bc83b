package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
)

var errFlaky = errors.New("flaky")

// run runs Do in a goroutine, advancing clock by step whenever Do pauses,
// and returns Do's result and how often op ran.
func run(t *testing.T, ctx context.Context, clock *clockwork.FakeClock, step time.Duration, p Policy, op func(n int) error) (error, int) {
	t.Helper()
	calls := 0
	done := make(chan error, 1)
	go func() { done <- Do(ctx, p, func() error { calls++; return op(calls) }) }()
	wait, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		select {
		case err := <-done:
			return err, calls
		default:
		}
		// Do either pauses on the clock (one waiter) or is about to return.
		blocked := make(chan error, 1)
		bctx, stop := context.WithTimeout(wait, 10*time.Millisecond)
		go func() { blocked <- clock.BlockUntilContext(bctx, 1) }()
		if err := <-blocked; err == nil {
			clock.Advance(step)
		}
		stop()
		if wait.Err() != nil {
			t.Fatal("Do did not return within a minute")
		}
	}
}

func TestDo(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steady := Policy{Initial: time.Second, Max: time.Second, Jitter: NoJitter}
	for _, tt := range []struct {
		name      string
		policy    Policy
		op        func(n int) error
		wantErr   error
		wantCalls int
	}{
		{"success after failures", steady, func(n int) error {
			if n < 3 {
				return errFlaky
			}
			return nil
		}, nil, 3},
		{"permanent error stops at once, unwrapped", steady, func(n int) error { return Permanent(fmt.Errorf("refused: %w", errFlaky)) }, errFlaky, 1},
		// Pauses of 1s: attempts at 0, 1, 2 and 3s; a fifth would start after 3s.
		{"gives up after", Policy{Initial: time.Second, Max: time.Second, Jitter: NoJitter, GiveUpAfter: 3 * time.Second},
			func(int) error { return errFlaky }, errFlaky, 4},
		// Attempts at 0, 1 and 2s; the next would start at 3s, after 2.5s.
		{"gives up if", Policy{Initial: time.Second, Max: time.Second, Jitter: NoJitter},
			func(int) error { return errFlaky }, errFlaky, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(start)
			tt.policy.Clock = clock
			if tt.name == "gives up if" {
				tt.policy.GiveUpIf = func(pause time.Duration) bool {
					return clock.Now().Add(pause).After(start.Add(2500 * time.Millisecond))
				}
			}
			var notified int
			tt.policy.Notify = func(err error, pause time.Duration) {
				notified++
				if !errors.Is(err, errFlaky) || pause != time.Second {
					t.Errorf("notified of %v, pause %s; want the op's error and 1s", err, pause)
				}
			}
			err, calls := run(t, context.Background(), clock, time.Second, tt.policy, tt.op)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Do returned %v, want %v", err, tt.wantErr)
			}
			if IsPermanent(err) {
				t.Errorf("Do returned the Permanent wrapper %v; want the error inside", err)
			}
			if calls != tt.wantCalls || notified != tt.wantCalls-1 {
				t.Errorf("op ran %d times (notified %d), want %d", calls, notified, tt.wantCalls)
			}
		})
	}
}

// TestDoStopsWhenContextEnds: an ended context stops the pause; Do returns
// the op's last error (why it failed), and op is not called again.
func TestDoStopsWhenContextEnds(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- Do(ctx, Policy{Initial: time.Hour, Clock: clock}, func() error { calls++; return errFlaky })
	}()
	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, errFlaky) || calls != 1 {
		t.Fatalf("Do returned %v after %d calls; want the op's error after 1", err, calls)
	}
	// Already ended: op still runs once, and its error comes back.
	calls = 0
	if err := Do(ctx, Policy{}, func() error { calls++; return errFlaky }); !errors.Is(err, errFlaky) || calls != 1 {
		t.Fatalf("ended context: %v after %d calls; want the op's error after 1", err, calls)
	}
}

func TestBackoff(t *testing.T) {
	b := Every(2 * time.Second).Backoff()
	for range 5 {
		if d := b.NextBackOff(); d != 2*time.Second {
			t.Fatalf("Every(2s): pause %s", d)
		}
	}
	b = Policy{Initial: time.Second, Max: 4 * time.Second, Multiplier: 2, Jitter: NoJitter}.Backoff()
	var got []time.Duration
	for range 5 {
		got = append(got, b.NextBackOff())
	}
	if fmt.Sprint(got) != "[1s 2s 4s 4s 4s]" {
		t.Errorf("doubling to 4s: %v", got)
	}
	// The zero policy: 100ms ±50% first.
	for range 100 {
		if d := (Policy{}).Backoff().NextBackOff(); d < 50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("zero policy's first pause %s, want 100ms ±50%%", d)
		}
	}
}

func TestPermanent(t *testing.T) {
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	if !IsPermanent(fmt.Errorf("wrapped: %w", Permanent(errFlaky))) || IsPermanent(errFlaky) {
		t.Error("IsPermanent does not see through wrapping, or sees a plain error as permanent")
	}
}

// TestSteps: a Steps schedule gives its delays in order, jittered within
// bounds, then Stop; Skip moves past some; Do with it as Policy.Pauses
// tries once more than there are delays and pauses exactly those.
func TestSteps(t *testing.T) {
	delays := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute}
	s := &Steps{Delays: delays}
	for i, want := range delays {
		if got := s.NextBackOff(); got != want {
			t.Errorf("pause %d: %s, want %s", i, got, want)
		}
	}
	if got := s.NextBackOff(); got != backoff.Stop {
		t.Errorf("after the last delay: %s, want Stop", got)
	}
	s.Reset()
	s.Skip(2)
	if got := s.NextBackOff(); got != delays[2] || s.Taken() != 3 {
		t.Errorf("after Skip(2): %s (taken %d), want %s (3)", got, s.Taken(), delays[2])
	}
	for _, r := range []float64{0, 0.5, 0.999} {
		j := &Steps{Delays: delays, Jitter: 0.1, Rand: func() float64 { return r }}
		got := j.NextBackOff()
		if got < 4500*time.Millisecond || got > 5500*time.Millisecond {
			t.Errorf("jitter 0.1, rand %v: %s, want within 10%% of 5s", r, got)
		}
	}

	clock := clockwork.NewFakeClock()
	var pauses []time.Duration
	p := Policy{Clock: clock, Pauses: func() backoff.BackOff { return &Steps{Delays: delays} },
		Notify: func(_ error, pause time.Duration) { pauses = append(pauses, pause) }}
	err, calls := run(t, context.Background(), clock, 30*time.Minute, p, func(int) error { return errFlaky })
	if !errors.Is(err, errFlaky) || calls != len(delays)+1 {
		t.Errorf("Do with Steps: %v after %d calls, want %v after %d", err, calls, errFlaky, len(delays)+1)
	}
	if fmt.Sprint(pauses) != fmt.Sprint(delays) {
		t.Errorf("pauses %v, want %v", pauses, delays)
	}
}

// TestGiveUpAfterSpansProgress: Progressed starts the pauses over, not the
// give-up bound, which counts from the first attempt.
func TestGiveUpAfterSpansProgress(t *testing.T) {
	clock := clockwork.NewFakeClock()
	p := Policy{Initial: 400 * time.Millisecond, Multiplier: 2, Jitter: NoJitter, GiveUpAfter: time.Second, Clock: clock}
	var pauses []time.Duration
	p.Notify = func(_ error, pause time.Duration) { pauses = append(pauses, pause) }
	err, calls := run(t, context.Background(), clock, 400*time.Millisecond, p, func(int) error { return Progressed(errFlaky) })
	if !errors.Is(err, errFlaky) || calls != 3 {
		t.Errorf("Do: %v after %d calls, want %v after 3 (at 0, 400ms, 800ms; the next would end past 1s)", err, calls, errFlaky)
	}
	if fmt.Sprint(pauses) != "[400ms 400ms]" {
		t.Errorf("pauses %v, want [400ms 400ms]: each Progressed starts them over", pauses)
	}
}

// BenchmarkDoSucceeds: the cost of Do around an operation that succeeds at
// once (the consumer's every batch).
func BenchmarkDoSucceeds(b *testing.B) {
	p := Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := Do(ctx, p, func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
