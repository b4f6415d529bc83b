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

// Run runs parts on a context derived from parent until one returns on its
// own or parent ends, then ends that context and waits at most shutdown for
// the others. It returns the parts' joined errors; a part that returned
// nil on its own, before parent ended, counts as an error too (nil joined:
// the others were stopped because of it).
func Run(parent context.Context, shutdown time.Duration, log *slog.Logger, parts ...func(context.Context) error) error {
	ctx, stopAll := context.WithCancel(parent)
	defer stopAll()
	done := make(chan error, len(parts))
	for _, p := range parts {
		go func() { done <- p(ctx) }()
	}
	var errs []error
	pending := len(parts)
	select {
	case err := <-done:
		pending--
		if err != nil || parent.Err() == nil {
			// A part stopped on its own: stop the others too.
			errs = append(errs, err)
		}
	case <-parent.Done():
	}
	log.Info("shutting down: finishing batches in flight", "timeout", shutdown)
	stopAll()
	deadline := time.After(shutdown)
	for ; pending > 0; pending-- {
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-deadline:
			return &ShutdownTimeout{After: shutdown}
		}
	}
	return errors.Join(errs...)
}
