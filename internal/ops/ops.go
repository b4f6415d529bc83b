// Package ops is the operational side of bouncer's long-running processes
// (bouncer worker and bouncer api): the ops HTTP server, kept on a listener
// of its own, and the running of a process's parts with a bounded shutdown.
//
// # Contract
//
//   - The ops server answers GET /healthz with 200 while the process runs;
//     GET /readyz with 200 only when every check passes (each gets 2 s),
//     else 503 naming the first failing one; GET /metrics with the
//     registry's metrics (Prometheus text format); and Go's profiles under
//     /debug/pprof/. It serves nothing else, so tenants never reach it
//     unless the operator exposes its address.
//   - Run runs every part on one context until one part returns on its own
//     or the parent context ends; then it ends that context and waits at
//     most the shutdown bound for the other parts. Past the bound it
//     returns an error and leaves them: work not committed is redelivered
//     to whoever consumes next.
package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check says why the process is not ready (nil: ready).
type Check func(ctx context.Context) error

// Serve starts the ops server on addr and returns it; Close it to stop.
func Serve(addr string, reg *prometheus.Registry, checks []Check, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ops server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		for _, check := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			err := check(ctx)
			cancel()
			if err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles, for "where does the time go". The ops port listens on
	// loopback unless configured otherwise.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/heap", pprof.Index)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("ops server stopped", "err", err)
		}
	}()
	log.Info("ops server listening", "addr", ln.Addr().String())
	return srv, nil
}

// Go runs f in a goroutine and returns a func that waits for f and returns
// its result, as often as it is called.
func Go(f func() error) (wait func() error) {
	done := make(chan struct{})
	var err error
	go func() { defer close(done); err = f() }()
	var once sync.Once
	return func() error {
		once.Do(func() { <-done })
		return err
	}
}

// ShutdownTimeout is Run's error when parts did not stop within the bound.
type ShutdownTimeout struct{ After time.Duration }

func (e *ShutdownTimeout) Error() string {
	return fmt.Sprintf("shutdown took longer than %s; exiting (uncommitted batches will be redelivered and skipped)", e.After)
}

// Service is a long-running part of a process that owns its lifecycle
// (the webhook delivery, a consumer group wrapped by Func, ...).
type Service interface {
	// Run runs the service until Shutdown is called or it stops on its
	// own; it returns why it stopped (nil after a clean shutdown).
	Run(ctx context.Context) error
	// Shutdown stops taking work, finishes or hands back what is in
	// flight, flushes, commits and closes, in the service's own order,
	// and waits for that at most until ctx ends (then it returns an
	// error). It may be called more than once, and before Run.
	Shutdown(ctx context.Context) error
}

// Func is a Service of a function that runs until its context ends: its
// Shutdown ends that context and waits for the function to return.
func Func(run func(context.Context) error) Service {
	ctx, stop := context.WithCancel(context.Background())
	return &funcService{run: run, stopped: ctx, stop: stop}
}

type funcService struct {
	run     func(context.Context) error
	stopped context.Context // ended by Shutdown
	stop    context.CancelFunc
	once    Once
}

func (f *funcService) Run(ctx context.Context) error {
	if err := f.once.Begin(); err != nil {
		return err
	}
	defer f.once.End()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(f.stopped, cancel)()
	return f.run(ctx)
}

func (f *funcService) Shutdown(ctx context.Context) error {
	f.stop()
	return f.once.Wait(ctx, nil)
}

// Once is the bookkeeping of a Service's one run: Run calls Begin and,
// when it returns, End; Shutdown, once it told the service to stop, calls
// Wait. A Shutdown before Run means the service never runs. The zero Once
// is ready to use.
type Once struct {
	mu    sync.Mutex
	began bool          // Run began, or Shutdown came first
	done  chan struct{} // closed by End, or by a Wait before Begin
}

func (o *Once) doneCh() chan struct{} {
	if o.done == nil {
		o.done = make(chan struct{})
	}
	return o.done
}

// Begin starts the run; it fails when Run came twice or after Shutdown.
func (o *Once) Begin() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.began {
		return errors.New("ops: service run twice, or after its shutdown")
	}
	o.began = true
	o.doneCh()
	return nil
}

// End marks the run finished.
func (o *Once) End() {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.doneCh())
}

// Wait waits until the run finished or ctx ends (then it returns ctx's
// error). Before Begin it calls never (nil: nothing), and the service
// never runs.
func (o *Once) Wait(ctx context.Context, never func()) error {
	o.mu.Lock()
	done := o.doneCh()
	if !o.began {
		o.began = true
		if never != nil {
			never()
		}
		close(done)
	}
	o.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs services until one returns on its own or parent ends, then
// shuts every service down (all at once, each in its own order) and waits
// at most shutdown for them. It returns the services' joined errors; a
// service that returned nil on its own, before parent ended, counts as an
// error too (nil joined: the others were stopped because of it). The
// services run on a context with parent's values that does not end with
// it: they stop through Shutdown.
func Run(parent context.Context, shutdown time.Duration, log *slog.Logger, services ...Service) error {
	ctx := context.WithoutCancel(parent)
	done := make(chan error, len(services))
	for _, s := range services {
		go func() { done <- s.Run(ctx) }()
	}
	var errs []error
	pending := len(services)
	select {
	case err := <-done:
		pending--
		if err != nil || parent.Err() == nil {
			// A service stopped on its own: stop the others too.
			errs = append(errs, err)
		}
	case <-parent.Done():
	}
	log.Info("shutting down: finishing batches in flight", "timeout", shutdown)
	sctx, cancel := context.WithTimeout(ctx, shutdown)
	defer cancel()
	for _, s := range services {
		go s.Shutdown(sctx)
	}
	for ; pending > 0; pending-- {
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-sctx.Done():
			return &ShutdownTimeout{After: shutdown}
		}
	}
	return errors.Join(errs...)
}
