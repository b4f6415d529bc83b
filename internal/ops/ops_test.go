package ops

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// recorder is a Service whose Run waits for Shutdown, then takes stopFor
// to stop (forever when negative).
type recorder struct {
	mu        sync.Mutex
	shutdowns int
	stop      chan struct{}
	once      sync.Once
	stopFor   time.Duration
	runErr    error
}

func newRecorder(stopFor time.Duration, err error) *recorder {
	return &recorder{stop: make(chan struct{}), stopFor: stopFor, runErr: err}
}

func (r *recorder) Run(ctx context.Context) error {
	<-r.stop
	if r.stopFor < 0 {
		select {}
	}
	time.Sleep(r.stopFor)
	return r.runErr
}

func (r *recorder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.shutdowns++
	r.mu.Unlock()
	r.once.Do(func() { close(r.stop) })
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shutdowns
}

var quiet = slog.New(slog.DiscardHandler)

// TestRunShutsEveryServiceDown: when the parent ends, every service is
// shut down (through its Shutdown, not its run context) and Run returns
// their errors.
func TestRunShutsEveryServiceDown(t *testing.T) {
	a, b := newRecorder(0, nil), newRecorder(10*time.Millisecond, errors.New("b failed to flush"))
	parent, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(parent, time.Minute, quiet, a, b) }()
	cancel()
	err := <-done
	if err == nil || err.Error() != "b failed to flush" {
		t.Errorf("Run returned %v, want b's error", err)
	}
	if a.count() != 1 || b.count() != 1 {
		t.Errorf("shutdowns: a %d, b %d; want one each", a.count(), b.count())
	}
}

// TestRunStopsOthersWhenOneStops: a service that returns on its own, even
// with nil, stops the others.
func TestRunStopsOthersWhenOneStops(t *testing.T) {
	early := Func(func(context.Context) error { return nil })
	other := newRecorder(0, nil)
	if err := Run(context.Background(), time.Minute, quiet, early, other); err != nil {
		t.Errorf("Run returned %v, want nil (the early service's nil)", err)
	}
	if other.count() != 1 {
		t.Errorf("the other service was shut down %d times, want once", other.count())
	}
}

// TestRunBoundsShutdown: a service that does not stop within the bound is
// left behind with a ShutdownTimeout.
func TestRunBoundsShutdown(t *testing.T) {
	stuck := newRecorder(-1, nil)
	parent, cancel := context.WithCancel(context.Background())
	cancel()
	err := Run(parent, 50*time.Millisecond, quiet, stuck)
	var late *ShutdownTimeout
	if !errors.As(err, &late) || late.After != 50*time.Millisecond {
		t.Fatalf("Run returned %v, want a ShutdownTimeout after 50ms", err)
	}
}

// TestFunc: Shutdown ends the function's context and waits for it; it is
// idempotent, works before Run (which then refuses to start), and is
// bounded by its context.
func TestFunc(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	f := Func(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		close(ended)
		return errors.New("stopped")
	})
	ran := make(chan error, 1)
	go func() { ran <- f.Run(context.Background()) }()
	<-started
	for range 3 {
		if err := f.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	}
	select {
	case <-ended:
	default:
		t.Fatal("Shutdown returned before the function did")
	}
	if err := <-ran; err == nil || err.Error() != "stopped" {
		t.Errorf("Run returned %v, want the function's error", err)
	}

	never := Func(func(ctx context.Context) error { t.Error("ran after its shutdown"); return nil })
	if err := never.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Run: %v", err)
	}
	if err := never.Run(context.Background()); err == nil {
		t.Error("Run after Shutdown started the function")
	}

	stuckStarted := make(chan struct{})
	stuck := Func(func(ctx context.Context) error { close(stuckStarted); select {} })
	go stuck.Run(context.Background())
	<-stuckStarted
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := stuck.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown of a function that never returns: %v, want the deadline", err)
	}
}
