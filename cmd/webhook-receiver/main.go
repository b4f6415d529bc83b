// Command webhook-receiver is a small event webhook endpoint for trying
// bouncer's webhooks (make demo runs one): it checks each delivery's
// Standard Webhooks signature (webhook-id, webhook-timestamp,
// webhook-signature) with the subscription's secret, using the
// specification's own Go library as a receiver of yours would, and counts
// what it gets.
//
//	WEBHOOK_SECRET=whsec_... webhook-receiver --listen 127.0.0.1:9911
//
// Every POST (any path) must carry a valid signature made within the last
// five minutes and a JSON array of events: it is answered 204 and counted,
// otherwise 401 (bad or missing signature) or 400 (not an event array) and
// counted as rejected. Events are counted by type, and an sg_event_id seen
// before is counted as a duplicate (webhooks are delivered at least once).
// GET / answers the counts as JSON. A line of counts goes to stderr every
// 10 seconds while deliveries come in.
//
// The secret comes from the environment, not a flag, so that it does not
// show in ps. The receiver keeps every sg_event_id it has seen in memory: it
// is for trying things out, not for production.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}

// maxBody bounds one delivery; bouncer's batches are far smaller.
const maxBody = 16 << 20

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("webhook-receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9911", "address to listen on, host:port (port 0: any free port)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	secret := strings.TrimSpace(getenv("WEBHOOK_SECRET"))
	if secret == "" {
		return errors.New("set WEBHOOK_SECRET to the subscription's signing secret (whsec_..., from GET /bouncer/v1/webhooks/{id}/secret)")
	}
	rc, err := newReceiver(secret)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var last counts
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			if c := rc.snapshot(); c.Deliveries != last.Deliveries || c.Rejected != last.Rejected {
				last = c
				log.Info("received", "deliveries", c.Deliveries, "events", c.Events, "duplicates", c.Duplicates, "rejected", c.Rejected)
			}
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		}
	}
}

// counts is what GET / answers.
type counts struct {
	Deliveries int            `json:"deliveries"` // accepted POSTs
	Events     int            `json:"events"`     // events in them
	Duplicates int            `json:"duplicates"` // events whose sg_event_id came before
	Rejected   int            `json:"rejected"`   // POSTs refused (signature or body)
	ByType     map[string]int `json:"by_type"`    // events by their "event" field
	Last       *time.Time     `json:"last_delivery,omitempty"`
	LastReject string         `json:"last_rejection,omitempty"` // why the latest refusal
}

type receiver struct {
	wh *standardwebhooks.Webhook

	mu   sync.Mutex
	c    counts
	seen map[string]bool
}

func newReceiver(secret string) (*receiver, error) {
	if !strings.HasPrefix(secret, "whsec_") {
		return nil, errors.New("WEBHOOK_SECRET: want a Standard Webhooks secret, whsec_<base64>")
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, fmt.Errorf("WEBHOOK_SECRET: %w", err)
	}
	return &receiver{wh: wh, c: counts{ByType: map[string]int{}}, seen: map[string]bool{}}, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rc.snapshot())
		return
	case http.MethodPost:
	default:
		http.Error(w, "POST deliveries, GET / for the counts", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		rc.reject(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.reject(w, http.StatusUnauthorized, "signature: "+err.Error())
		return
	}
	var events []struct {
		Event     string `json:"event"`
		SGEventID string `json:"sg_event_id"`
	}
	if err := json.Unmarshal(body, &events); err != nil {
		rc.reject(w, http.StatusBadRequest, "body: not a JSON array of events: "+err.Error())
		return
	}
	now := time.Now().UTC()
	rc.mu.Lock()
	rc.c.Deliveries++
	rc.c.Events += len(events)
	rc.c.Last = &now
	for _, e := range events {
		rc.c.ByType[e.Event]++
		if e.SGEventID != "" {
			if rc.seen[e.SGEventID] {
				rc.c.Duplicates++
			}
			rc.seen[e.SGEventID] = true
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) reject(w http.ResponseWriter, status int, why string) {
	rc.mu.Lock()
	rc.c.Rejected++
	rc.c.LastReject = why
	rc.mu.Unlock()
	http.Error(w, why, status)
}

func (rc *receiver) snapshot() counts {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	c := rc.c
	c.ByType = maps.Clone(rc.c.ByType)
	return c
}
