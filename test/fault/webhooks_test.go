//go:build fault

package fault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"
)

// webhookSink is the receiver of the webhook fault test: it fails with 503
// until told otherwise, keeps the sg_event_ids of accepted batches, and
// records any webhook-id in flight twice at once.
type webhookSink struct {
	ok       atomic.Bool
	requests atomic.Int64
	mu       sync.Mutex
	got      map[string]bool
	inFlight map[string]int
	overlaps []string
}

func (s *webhookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("webhook-id")
	s.requests.Add(1)
	s.mu.Lock()
	s.inFlight[id]++
	if s.inFlight[id] > 1 {
		s.overlaps = append(s.overlaps, id)
	}
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.inFlight[id]--; s.mu.Unlock() }()
	body, err := io.ReadAll(r.Body)
	if err != nil || !s.ok.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var evs []struct {
		ID string `json:"sg_event_id"`
	}
	if json.Unmarshal(body, &evs) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, e := range evs {
		s.got[e.ID] = true
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// TestWebhooksKillNineMidRetry: an endpoint fails while events stream in,
// so batches sit in the Kafka retry tiers; the worker is killed with
// SIGKILL twice while retrying and restarted; then the endpoint recovers,
// and every event the sink stored for the account reaches it, with no
// webhook-id ever in flight twice at once.
//
// It uses the shared services when KAFKA_BROKERS and CLICKHOUSE_ADDR are
// set (it kills only workers), else an instance of its own.
func TestWebhooksKillNineMidRetry(t *testing.T) {
	inst := &instance{name: "shared", brokers: os.Getenv("KAFKA_BROKERS"), clickhouse: os.Getenv("CLICKHOUSE_ADDR")}
	if inst.brokers == "" || inst.clickhouse == "" {
		inst = services(t, "fault-webhooks")
	}
	r := newRun(t, inst)
	if inst.name == "shared" {
		// Names of this run only, removed afterwards.
		suffix := fmt.Sprint(time.Now().UnixNano())
		r.topic += "." + suffix
		r.db += "_" + suffix
		t.Cleanup(func() {
			if !t.Failed() {
				dropRun(t, r)
			}
		})
	}
	key := make([]byte, 32)
	rand.Read(key)
	prefix := r.topic + ".wh"
	// The receiver listens on loopback; the allow-list opens its port only.
	sink := &webhookSink{got: map[string]bool{}, inFlight: map[string]int{}}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sink}
	go srv.Serve(rl)
	t.Cleanup(func() { srv.Close() })
	extra := []string{
		"BOUNCER_SECRET_KEY=" + base64.StdEncoding.EncodeToString(key), "BOUNCER_WEBHOOK_ALLOW_NETS=" + rl.Addr().String(),
		"BOUNCER_WEBHOOK_RETRY_SCHEDULE=2s,3s,4s,5s,5s,5s,5s,5s,5s,5s,5s,5s", "BOUNCER_WEBHOOK_TOPIC_PREFIX=" + prefix,
		"BOUNCER_WEBHOOK_GROUP=" + r.topic + ".webhooks", "BOUNCER_WEBHOOK_REFRESH=500ms", "BOUNCER_WEBHOOK_TIMEOUT=2s",
		"BOUNCER_CHANGELOG_TOPIC=" + r.topic + ".suppressions", "BOUNCER_API_CHECK=false", "BOUNCER_API_RATE_LIMIT=10000",
		"BOUNCER_WEBHOOK_BREAKER_OPEN=2s",
	}
	env := append(r.env(), extra...)
	bin := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bouncer %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	bin("migrate")
	apiKey := regexp.MustCompile(`(?m)^SG\.\S+$`).FindString(bin("keys", "create", "--account", "acme", "--name", "fault"))

	// The API, to subscribe the receiver the way a user does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := ln.Addr().String()
	ln.Close()
	apiLog, _ := os.Create(filepath.Join(r.logs, "api.log"))
	api := exec.Command(binary, "api")
	api.Env = append(env, "BOUNCER_API_ADDR="+apiAddr, "BOUNCER_API_OPS_ADDR=127.0.0.1:0")
	api.Stdout, api.Stderr = apiLog, apiLog
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Process.Kill(); api.Wait() })
	body := `{"enabled":true,"url":"http://` + rl.Addr().String() + `/hook","processed":true,"dropped":true,"delivered":true,"deferred":true,"bounce":true,"open":true,"click":true,"spam_report":true,"unsubscribe":true,"group_unsubscribe":true,"group_resubscribe":true}`
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("POST", "http://"+apiAddr+"/v3/user/webhooks/event/settings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 201 {
				break
			}
			t.Fatalf("create subscription: %d %s", resp.StatusCode, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("api not answering: %v; log in %s", err, r.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	const count = 3000
	produced := make(chan error, 1)
	go func() {
		cmd := exec.Command(binary, "produce", "--quiet", "--count", fmt.Sprint(count), "--rate", "300", "--seed", "11", "--accounts", "acme")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("produce: %v\n%s", err, out)
		}
		produced <- err
	}()
	w := r.startWorkerEnv("worker", env)
	c := r.conn()
	// Kill while batches are parked and being retried.
	for i := 1; i <= 2; i++ {
		from := sink.requests.Load()
		// A (re)started worker first joins its groups (a restarted one
		// waits out the killed member's session, 6 s): at load 40 the
		// first attempt came 80 s after the start (1 run in 20). Then
		// its open circuit lets one trial through about every 2.5 s: 20
		// failures took 60 s on a loaded machine.
		waitUntil(t, 4*time.Minute, "a first failed attempt", func() bool { return sink.requests.Load() > from })
		waitUntil(t, 2*time.Minute, "failed attempts", func() bool { return sink.requests.Load() >= from+20 })
		time.Sleep(time.Duration(1500*i) * time.Millisecond)
		if err := w.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill -9 #%d after %d failed requests", i, sink.requests.Load())
		w = r.startWorkerEnv("worker", env)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	sink.ok.Store(true)
	t.Log("endpoint recovered")

	// Every event of the account that the sink stored reaches the endpoint.
	r.waitStored(c, count, 2*time.Minute)
	ids := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rows, err := c.Query(ctx, "SELECT DISTINCT sg_event_id FROM "+r.db+".events WHERE derived = 0 AND account_id = 'acme'")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			rows.Scan(&id)
			out = append(out, id)
		}
		return out
	}()
	if len(ids) < count*9/10 {
		t.Fatalf("only %d events of acme stored", len(ids))
	}
	var missing []string
	defer func() {
		if len(missing) > 0 {
			t.Logf("%d of %d events missing, e.g. %v; logs in %s", len(missing), len(ids), missing[:min(5, len(missing))], r.logs)
		}
	}()
	waitUntil(t, 90*time.Second, "every event delivered", func() bool {
		missing = missing[:0]
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, id := range ids {
			if !sink.got[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	sink.mu.Lock()
	overlaps := sink.overlaps
	sink.mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("webhook-ids in flight twice at once: %v", overlaps)
	}
	t.Logf("%d events delivered after two kill -9 mid-retry (%d requests in all)", len(ids), sink.requests.Load())
	stopGracefully(t, w)
}

// dropRun removes a run's database and topics from the shared services.
func dropRun(t *testing.T, r *run) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if c, err := ch.Open(&ch.Options{Addr: []string{r.inst.clickhouse}}); err == nil {
		c.Exec(ctx, "DROP DATABASE IF EXISTS "+r.db)
		c.Close()
	}
	conn, err := kafka.Dial("tcp", strings.Split(r.inst.brokers, ",")[0])
	if err != nil {
		return
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	if err != nil {
		return
	}
	seen := map[string]bool{}
	var topics []string
	for _, p := range parts {
		if strings.HasPrefix(p.Topic, r.topic) && !seen[p.Topic] {
			seen[p.Topic] = true
			topics = append(topics, p.Topic)
		}
	}
	ctrl, err := conn.Controller()
	if err != nil {
		return
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, fmt.Sprint(ctrl.Port)))
	if err != nil {
		return
	}
	defer cc.Close()
	if len(topics) > 0 {
		cc.DeleteTopics(topics...)
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, timeout)
}

// startWorkerEnv is startWorker with a given environment.
func (r *run) startWorkerEnv(label string, env []string) *exec.Cmd {
	r.t.Helper()
	f, err := os.OpenFile(filepath.Join(r.logs, label+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(binary, "worker")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start worker: %v", err)
	}
	go func() { cmd.Wait(); f.Close() }()
	r.mu.Lock()
	r.procs = append(r.procs, cmd)
	r.mu.Unlock()
	return cmd
}
