package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// startAPIProcess runs one more `bouncer api` with env (another process of
// the same deployment: same ClickHouse database, Kafka and topics) and
// returns its base URL.
func startAPIProcess(t *testing.T, env map[string]string) string {
	t.Helper()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), logs, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bouncer api: %v", err)
		}
	})
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	var base string
	waitFor(t, "api listening", 30*time.Second, func() (bool, string) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			base = "http://" + m[1]
			return true, ""
		}
		select {
		case err := <-done:
			t.Fatalf("bouncer api stopped: %v\n%s", err, logs.String())
		default:
		}
		return false, logs.String()
	})
	return base
}

// createConcurrently fires one create per URL at once, the i-th to
// bases[i%len(bases)], and returns the status codes.
func createConcurrently(t *testing.T, f *webhookAPI, bases []string, key string, urls []string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			g := *f
			g.base = bases[i%len(bases)]
			code, body, _ := g.call(t, key, "POST", "/v3/user/webhooks/event/settings", `{"url":"`+u+`","bounce":true}`)
			if code != 201 && !(code == 400 && (strings.Contains(body, "maximum number of webhooks") || strings.Contains(body, "already exists"))) {
				t.Errorf("create %s: %d %s", u, code, body)
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// stored counts the account's subscriptions as a reader sees them, and
// their distinct URLs.
func stored(t *testing.T, f *webhookAPI, key string) (n, urls int) {
	t.Helper()
	var all struct {
		Webhooks []struct{ URL string } `json:"webhooks"`
	}
	code, body, _ := f.call(t, key, "GET", "/v3/user/webhooks/event/settings/all", "")
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil {
		t.Fatalf("list: %d %s", code, body)
	}
	seen := map[string]bool{}
	for _, w := range all.Webhooks {
		seen[w.URL] = true
	}
	return len(all.Webhooks), len(seen)
}

// TestWebhookLimitsUnderConcurrency is the security review's finding 4:
// 30 concurrent creates stored 30 subscriptions (limit 5) and 4 concurrent
// creates of one URL stored 4. Against real ClickHouse and Kafka, with two
// `bouncer api` processes of one deployment: 30 concurrent creates split
// over both and 4 of one URL split over both store exactly 5 and 1; a URL
// change racing a create of that URL leaves one of them; after a delete,
// one of three concurrent creates fits.
func TestWebhookLimitsUnderConcurrency(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	f := startWebhookAPI(t, map[string]string{secrets.EnvKey: secrets.GenerateKey(), "KAFKA_BROKERS": brokers,
		"BOUNCER_WEBHOOK_CLAIMS": "true", "BOUNCER_WEBHOOK_CLAIMS_TOPIC": topic + ".claims"})
	second := startAPIProcess(t, f.env)
	keyC := createKey(t, f.env, "initech")
	bases := []string{f.base, second}
	urls := func(n int, same bool) []string {
		var out []string
		for i := range n {
			if same {
				out = append(out, "https://hooks.example.com/same")
			} else {
				out = append(out, fmt.Sprintf("https://hooks.example.com/%d", i))
			}
		}
		return out
	}

	// 15 at once to each process: concurrency within a process and across
	// the two (one process alone is TestWebhookLimitsWithoutKafka).
	codes := createConcurrently(t, f, bases, f.keyB, urls(30, false))
	if n, _ := stored(t, f, f.keyB); n != 5 || codes[201] != 5 {
		t.Errorf("30 concurrent creates over two processes: %d stored, answers %v; want 5 and five 201s", n, codes)
	}
	codes = createConcurrently(t, f, bases, keyC, urls(4, true))
	if n, distinct := stored(t, f, keyC); n != 1 || distinct != 1 || codes[201] != 1 {
		t.Errorf("4 concurrent creates of one URL over two processes: %d stored (%d URLs), answers %v; want 1", n, distinct, codes)
	}
	// Both processes read the same answer.
	g := *f
	g.base = second
	if n, _ := stored(t, &g, f.keyB); n != 5 {
		t.Errorf("the second process lists %d", n)
	}

	// A URL change races a create of the same URL: one wins.
	var first struct{ ID string }
	code, body, _ := f.call(t, keyC, "GET", "/v3/user/webhooks/event/settings/all", "")
	var all struct {
		Webhooks []struct{ ID string } `json:"webhooks"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil || len(all.Webhooks) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	first.ID = all.Webhooks[0].ID
	var wg sync.WaitGroup
	var patch, create int
	wg.Add(2)
	go func() {
		defer wg.Done()
		patch, _, _ = f.call(t, keyC, "PATCH", "/v3/user/webhooks/event/settings/"+first.ID, `{"url":"https://hooks.example.com/contested"}`)
	}()
	go func() {
		defer wg.Done()
		g := *f
		g.base = second
		create, _, _ = g.call(t, keyC, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.example.com/contested"}`)
	}()
	wg.Wait()
	if n, distinct := stored(t, f, keyC); distinct != n || (patch == 200) == (create == 201) {
		t.Errorf("URL change racing a create of its URL: PATCH %d, POST %d, %d stored with %d URLs; want exactly one to win", patch, create, n, distinct)
	}

	// A delete frees a slot for the next create, on either process.
	code, body, _ = f.call(t, f.keyB, "GET", "/v3/user/webhooks/event/settings/all", "")
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil || len(all.Webhooks) != 5 {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyB, "DELETE", "/v3/user/webhooks/event/settings/"+all.Webhooks[0].ID, ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	codes = createConcurrently(t, f, bases, f.keyB, []string{"https://hooks.example.com/a", "https://hooks.example.com/b", "https://hooks.example.com/c"})
	if n, _ := stored(t, f, f.keyB); n != 5 || codes[201] != 1 {
		t.Errorf("after a delete, 3 concurrent creates: %d stored, answers %v; want 5 and one 201", n, codes)
	}
}

// TestWebhookClaimRepair: a process that died after its claim was accepted
// and before it wrote the subscription leaves a claim without a row; the
// next change of the account writes it (and counts it), so the slot it
// holds is never lost to an invisible subscription.
func TestWebhookClaimRepair(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1) + ".claims"
	key := secrets.GenerateKey()
	f := startWebhookAPI(t, map[string]string{secrets.EnvKey: key, "KAFKA_BROKERS": brokers,
		"BOUNCER_WEBHOOK_CLAIMS": "true", "BOUNCER_WEBHOOK_CLAIMS_TOPIC": topic})
	ctx := context.Background()
	keys, err := secrets.ParseKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	log, err := claims.Open(ctx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, claims.DefaultPartitions)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// The dead process's claim: a create of ghost, accepted, never written.
	secret, err := sign.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	ghost := subscription.Webhook{ID: "01a23c00-0000-7000-8000-000000000001", AccountID: "acme", URL: "https://hooks.example.com/ghost",
		Enabled: true, Events: map[string]bool{"bounce": true}, Secrets: []sign.Secret{secret}, Created: now, UpdatedAt: now}
	row, err := subscription.NewSealer(keys).Seal("acme", ghost, subscription.NextVersion(0, now))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(row)
	if _, err := log.Append(ctx, claims.Claim{Op: claims.OpCreate, Scope: f.env["CLICKHOUSE_DATABASE"], Account: "acme", ID: ghost.ID,
		URL: ghost.URL, Version: row.Version, Row: raw}); err != nil {
		t.Fatal(err)
	}
	if n, _ := stored(t, f, f.keyA); n != 0 {
		t.Fatalf("the ghost is listed before any repair: %d", n)
	}
	// Its URL is taken already, and the next create writes it.
	if code, body, _ := f.call(t, f.keyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.example.com/ghost"}`); code != 400 || !strings.Contains(body, ghost.ID) {
		t.Errorf("create of the ghost's URL: %d %s", code, body)
	}
	if n, _ := stored(t, f, f.keyA); n != 1 {
		t.Errorf("after the next claim of the account, %d listed; want the ghost", n)
	}
	code, body, _ := f.call(t, f.keyA, "GET", "/bouncer/v1/webhooks/"+ghost.ID+"/secret", "")
	if code != 200 || !strings.Contains(body, sign.FormatSecret(secret.Key)) {
		t.Errorf("the repaired subscription's secret: %d %s", code, body)
	}
}

// TestWebhookLimitsWithoutKafka: with --webhook-claims=false (no Kafka),
// one `bouncer api` process still keeps the limits (its own lock), and says
// at start that several would not.
func TestWebhookLimitsWithoutKafka(t *testing.T) {
	f := startWebhookAPI(t, map[string]string{secrets.EnvKey: secrets.GenerateKey()})
	var urls []string
	for i := range 30 {
		urls = append(urls, fmt.Sprintf("https://hooks.example.com/%d", i))
	}
	codes := createConcurrently(t, f, []string{f.base}, f.keyA, urls)
	if n, _ := stored(t, f, f.keyA); n != 5 || codes[201] != 5 {
		t.Errorf("30 concurrent creates: %d stored, answers %v", n, codes)
	}
	codes = createConcurrently(t, f, []string{f.base}, f.keyB, []string{"https://x.example/1", "https://x.example/1", "https://x.example/1", "https://x.example/1"})
	if n, _ := stored(t, f, f.keyB); n != 1 || codes[201] != 1 {
		t.Errorf("4 concurrent creates of one URL: %d stored, answers %v", n, codes)
	}
	if !strings.Contains(f.logs.String(), "hold within this process only") {
		t.Errorf("no warning at start:\n%s", f.logs.String())
	}
}
