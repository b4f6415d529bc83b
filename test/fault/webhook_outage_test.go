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
)

// countingSink counts how often each event (type and sg_event_id) reached it in a 2xx
// answer; once gone is set it answers 410 Gone.
type countingSink struct {
	gone     atomic.Bool
	requests atomic.Int64
	mu       sync.Mutex
	got      map[string]int
}

func (s *countingSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if s.gone.Load() {
		w.WriteHeader(http.StatusGone)
		return
	}
	var evs []struct {
		ID    string `json:"sg_event_id"`
		Event string `json:"event"`
	}
	if json.Unmarshal(body, &evs) != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	for _, e := range evs {
		s.got[e.Event+" "+e.ID]++ // a derived drop shares its processed event's id
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// received returns how many distinct events arrived and how many arrived
// more than once.
func (s *countingSink) received() (distinct, twice int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.got {
		if n > 1 {
			twice++
		}
	}
	return len(s.got), twice
}

// TestWebhookGiveUpDuringClickHouseOutage: while ClickHouse is down for
// 60 s, one of an account's two endpoints starts answering 410, so the
// worker gives up its batches. Giving up must not need ClickHouse: the
// dead-letter topic holds the batch and the webhook_failed_batches table
// is filled from it once ClickHouse is back. Before, the failed table
// write failed the whole consumed batch, which the group then handled
// again, so the healthy endpoint got batches it had already answered
// with 2xx again and again until ClickHouse came back.
func TestWebhookGiveUpDuringClickHouseOutage(t *testing.T) {
	inst := services(t, "fault-webhook-outage")
	r := newRun(t, inst)
	key := make([]byte, 32)
	rand.Read(key)
	listen := func(h http.Handler) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	healthy := &countingSink{got: map[string]int{}}
	leaving := &countingSink{got: map[string]int{}}
	healthyAddr, leavingAddr := listen(healthy), listen(leaving)
	env := append(r.env(),
		"BOUNCER_SECRET_KEY="+base64.StdEncoding.EncodeToString(key), "BOUNCER_WEBHOOK_ALLOW_NETS="+healthyAddr+","+leavingAddr,
		"BOUNCER_WEBHOOK_TOPIC_PREFIX="+r.topic+".wh", "BOUNCER_WEBHOOK_GROUP="+r.topic+".webhooks", "BOUNCER_WEBHOOK_REFRESH=500ms",
		"BOUNCER_CHANGELOG_TOPIC="+r.topic+".suppressions", "BOUNCER_API_CHECK=false", "BOUNCER_API_RATE_LIMIT=10000",
	)
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
	subscribe := func(addr string) string {
		t.Helper()
		body := `{"enabled":true,"url":"http://` + addr + `/hook","processed":true,"delivered":true,"deferred":true,"bounce":true,"open":true,"click":true,"dropped":true,"spam_report":true,"unsubscribe":true,"group_unsubscribe":true,"group_resubscribe":true}`
		deadline := time.Now().Add(30 * time.Second)
		for {
			req, _ := http.NewRequest("POST", "http://"+apiAddr+"/v3/user/webhooks/event/settings", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Fatalf("create subscription: %d %s", resp.StatusCode, b)
				}
				var s struct {
					ID string `json:"id"`
				}
				json.Unmarshal(b, &s)
				return s.ID
			}
			if time.Now().After(deadline) {
				t.Fatalf("api not answering: %v; log in %s", err, r.logs)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	subscribe(healthyAddr)
	leavingID := subscribe(leavingAddr)

	produce := func(count, rate, seed int) {
		t.Helper()
		cmd := exec.Command(binary, "produce", "--quiet", "--count", fmt.Sprint(count), "--rate", fmt.Sprint(rate),
			"--seed", fmt.Sprint(seed), "--accounts", "acme")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("produce: %v\n%s", err, out)
		}
	}
	w := r.startWorkerEnv("worker", env)
	// Both endpoints take the first events while ClickHouse is up.
	const before, during = 200, 3000
	produce(before, 0, 21)
	waitUntil(t, 60*time.Second, "both endpoints got the first events", func() bool {
		a, _ := healthy.received()
		b, _ := leaving.received()
		return a >= before && b >= before
	})

	if out, err := script(t, "stop-clickhouse", "--name", inst.name); err != nil {
		t.Fatalf("stop clickhouse: %v\n%s", err, out)
	}
	down := time.Now()
	leaving.gone.Store(true)
	t.Log("clickhouse stopped; the second endpoint answers 410 from now on")
	produce(during, 100, 22)
	time.Sleep(time.Until(down.Add(60 * time.Second)))
	if distinct, twice := healthy.received(); distinct < before+during || twice > 0 {
		t.Errorf("during the 60 s outage the healthy endpoint got %d of the %d events, %d of them more than once; want all, none twice (giving up must not need ClickHouse); logs in %s",
			distinct, before+during, twice, r.logs)
	}
	if out, err := script(t, "start-clickhouse", "--name", inst.name); err != nil {
		t.Fatalf("start clickhouse: %v\n%s", err, out)
	}
	t.Logf("clickhouse started again after %s", time.Since(down).Round(time.Second))

	// Every event the leaving endpoint did not take is in a failed batch.
	c := r.conn()
	want := before + during
	var missing []string
	defer func() {
		if len(missing) > 0 {
			t.Logf("%d events neither taken by the leaving endpoint nor in a failed batch, e.g. %v", len(missing), missing[:min(5, len(missing))])
		}
	}()
	waitUntil(t, 90*time.Second, "the given-up batches in webhook_failed_batches", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rows, err := c.Query(ctx, "SELECT batch FROM "+r.db+".webhook_failed_batches FINAL WHERE endpoint_id = ?", leavingID)
		if err != nil {
			return false
		}
		defer rows.Close()
		ids := map[string]bool{}
		for rows.Next() {
			var raw string
			if rows.Scan(&raw) != nil {
				return false
			}
			var b struct {
				Events []struct {
					ID    string `json:"sg_event_id"`
					Event string `json:"event"`
				} `json:"events"`
			}
			if json.Unmarshal([]byte(raw), &b) != nil {
				return false
			}
			for _, e := range b.Events {
				ids[e.Event+" "+e.ID] = true
			}
		}
		leaving.mu.Lock()
		for id := range leaving.got {
			ids[id] = true
		}
		leaving.mu.Unlock()
		healthy.mu.Lock()
		defer healthy.mu.Unlock()
		missing = missing[:0]
		for id := range healthy.got {
			if !ids[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	distinct, twice := healthy.received()
	if distinct < want || twice > 0 {
		t.Errorf("healthy endpoint: %d distinct events, %d of them more than once; want at least %d, none twice", distinct, twice, want)
	}
	t.Logf("%d events: the healthy endpoint got each once; the leaving one took or gave up every one of them (%d requests to it)", distinct, leaving.requests.Load())
	stopGracefully(t, w)
}
