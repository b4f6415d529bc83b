//go:build browser

// Package browser is the dashboard's end-to-end test: it sends a fixed set of
// events through the real pipeline (bouncer produce, bouncer worker) into a
// database of its own, starts bouncer api on it, and drives the page at /ui
// in headless Chromium (Debian's chromium package, through playwright-core;
// dashboard.mjs). The page must show the numbers computed here in Go from
// the events produced; a suppression deleted through the page must be gone
// from ClickHouse (checked here, not through the page); a request with the
// session cookie but no CSRF token and a login with a wrong key must fail.
//
// Webhooks: the test makes four subscriptions of account acme through the
// API before the events flow, pointing at loopback receivers it runs (one
// answering 200, one 500, one 410, one switched off), lets the worker
// deliver with a compressed retry schedule until everything is delivered
// or given up, and reads the delivery log and failed batches from
// ClickHouse: the page's webhook view must show those numbers. A failed
// batch replayed through the page must get a replay id in ClickHouse and
// reach the (by then fixed) receiver under it; a key with only the read
// scope must be refused the replay.
//
// It needs Kafka and ClickHouse (KAFKA_BROKERS, CLICKHOUSE_ADDR), node and
// chromium. Run it with `make browser-test` (installs what is missing) or:
//
//	go test -tags browser -count=1 -v ./test/browser/
//
// BROWSER_SCREENSHOTS=dir saves a screenshot of each view there
// (`make screenshots` writes docs/screenshots).
package browser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/oauthtest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/segmentio/kafka-go"
)

var repoRoot, binary string

func TestMain(m *testing.M) {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "bouncer-browser-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bouncer")
	build := exec.Command("go", "build", "-o", binary, "./cmd/bouncer")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build bouncer:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// event is one SendGrid event as produced.
type event struct {
	Email       string `json:"email"`
	Timestamp   int64  `json:"timestamp"`
	Event       string `json:"event"`
	Type        string `json:"type,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Status      string `json:"status,omitempty"`
	SGEventID   string `json:"sg_event_id"`
	SGMessageID string `json:"sg_message_id"`
	AccountID   string `json:"account_id"`
}

var domains = []string{"gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "northwind.example", "contoso.example"}

var bounceTexts = []struct{ typ, reason, status string }{
	{"bounce", "550 5.1.1 The email account that you tried to reach does not exist.", "5.1.1"},
	{"bounce", "550 5.1.1 The email account that you tried to reach does not exist.", "5.1.1"},
	{"bounce", "550 5.4.1 Recipient address rejected: Access denied", "5.4.1"},
	{"bounce", "552 5.2.2 The email account that you tried to reach is over quota.", "5.2.2"},
	{"bounce", "550 5.7.1 Message rejected as spam by Content Filtering", "5.7.1"},
	{"blocked", "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using Spamhaus", "5.7.1"},
	{"blocked", "421 4.7.0 Try again later, closing connection. (TS01) rate limited", "4.7.0"},
}

// seed makes the events: account acme over the 14 days before today (UTC),
// with a little of account globex, which the page must never show.
func seed(today time.Time) []event {
	rng := rand.New(rand.NewPCG(27, 11))
	var out []event
	n := 0
	id := func() string { n++; return fmt.Sprintf("ev%05d", n) }
	for d := 14; d >= 1; d-- {
		day := today.AddDate(0, 0, -d)
		msgs := 30 + rng.IntN(25)
		for i := range msgs {
			acct := "acme"
			if i%10 == 9 {
				acct = "globex"
			}
			dom := domains[rng.IntN(len(domains))]
			email := fmt.Sprintf("user%02d.%03d@%s", d, i, dom)
			if i == 3 {
				email = strings.ToUpper(email[:1]) + email[1:] // addresses keep their case on the lists
			}
			msg := fmt.Sprintf("m%02d%03d", d, i)
			t := day.Unix() + int64(rng.IntN(20*3600))
			ev := func(kind, typ, reason, status string, at int64) event {
				return event{Email: email, Timestamp: at, Event: kind, Type: typ, Reason: reason, Status: status,
					SGEventID: id(), SGMessageID: msg, AccountID: acct}
			}
			if rng.IntN(25) == 0 { // the producer's own drop: requested, never processed
				out = append(out, ev("dropped", "", "Bounced Address", "", t))
				continue
			}
			out = append(out, ev("processed", "", "", "", t))
			switch x := rng.IntN(100); {
			case x < 12:
				b := bounceTexts[rng.IntN(len(bounceTexts))]
				out = append(out, ev("bounce", b.typ, b.reason, b.status, t+30))
			case x < 20:
				out = append(out, ev("deferred", "", "451 4.7.1 Greylisted, try again later", "4.7.1", t+20))
				out = append(out, ev("delivered", "", "", "", t+900))
			default:
				out = append(out, ev("delivered", "", "", "", t+5))
			}
		}
	}
	return out
}

type counts struct {
	Requests  int `json:"requests"`
	Processed int `json:"processed"`
	Delivered int `json:"delivered"`
	Deferred  int `json:"deferred"`
	Bounces   int `json:"bounces"`
	Blocks    int `json:"blocks"`
	Drops     int `json:"drops"`
}

func (c *counts) add(e event) {
	switch e.Event {
	case "processed":
		c.Processed++
		c.Requests++
	case "dropped":
		c.Drops++
		c.Requests++
	case "delivered":
		c.Delivered++
	case "deferred":
		c.Deferred++
	case "bounce":
		if e.Type == "blocked" {
			c.Blocks++
		} else {
			c.Bounces++
		}
	}
}

type reasonCount struct {
	Bounces int `json:"bounces"`
	Blocks  int `json:"blocks"`
}

// expectation is what the page must show, computed from the events.
type expectation struct {
	Start, End string
	Total      counts
	Days       map[string]counts
	Weeks      map[string]counts
	Providers  map[string]counts
	Domains    map[string]counts
	// Classes per day, then classification.
	Classes map[string]map[string]int
	Reasons map[string]reasonCount
}

func expect(events []event, account string, from, to time.Time) expectation {
	cl := enrich.MustNew()
	x := expectation{Start: from.Format(time.DateOnly), End: to.Format(time.DateOnly),
		Days: map[string]counts{}, Weeks: map[string]counts{}, Providers: map[string]counts{}, Domains: map[string]counts{},
		Classes: map[string]map[string]int{}, Reasons: map[string]reasonCount{}}
	bump := func(m map[string]counts, k string, e event) {
		c := m[k]
		c.add(e)
		m[k] = c
	}
	for _, e := range events {
		if e.AccountID != account {
			continue
		}
		at := time.Unix(e.Timestamp, 0).UTC()
		day := at.Format(time.DateOnly)
		week := at.AddDate(0, 0, -((int(at.Weekday()) + 6) % 7)).Format(time.DateOnly)
		dom := strings.ToLower(e.Email[strings.LastIndexByte(e.Email, '@')+1:])
		prov := enrich.ProviderForDomain(dom)
		if e.Event == "bounce" {
			res, err := cl.Classify(enrich.Input{Event: e.Event, Type: e.Type, Reason: e.Reason, Status: e.Status, Email: e.Email})
			if err != nil {
				panic(err)
			}
			if prov == "" {
				prov = res.Provider
			}
			if x.Classes[day] == nil {
				x.Classes[day] = map[string]int{}
			}
			x.Classes[day][string(res.Classification)]++
			r := x.Reasons[string(res.Reason)]
			if e.Type == "blocked" {
				r.Blocks++
			} else {
				r.Bounces++
			}
			x.Reasons[string(res.Reason)] = r
		}
		if prov == "" {
			prov = "other"
		}
		x.Total.add(e)
		bump(x.Days, day, e)
		bump(x.Weeks, week, e)
		bump(x.Providers, prov, e)
		bump(x.Domains, dom, e)
	}
	return x
}

// start runs the bouncer binary with args and env until the test ends.
func start(t *testing.T, name string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return cmd
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func run(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bouncer %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, deadline time.Duration, ok func() (bool, error)) {
	t.Helper()
	end := time.Now().Add(deadline)
	var last error
	for time.Now().Before(end) {
		done, err := ok()
		if done {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not after %v (last error: %v)", what, deadline, last)
}

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/lib/chromium/chromium", "/usr/bin/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func TestDashboard(t *testing.T) {
	brokers := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: make browser-test installs what is missing")
	}
	chromium := chromiumPath()
	if chromium == "" {
		t.Fatal("chromium is not installed: make browser-test installs it (apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "web", "node_modules", "playwright-core")); err != nil {
		t.Fatal("playwright-core is not installed: run npm ci --prefix web (make browser-test does)")
	}
	db := testenv.Database(t, chAddr)
	topic := testenv.Topic(t, brokers, 2)
	env := []string{"KAFKA_BROKERS=" + brokers, "CLICKHOUSE_ADDR=" + chAddr, "CLICKHOUSE_DATABASE=" + db,
		"BOUNCER_TOPIC=" + topic, "BOUNCER_CHANGELOG_TOPIC=" + topic + ".changes", "BOUNCER_DLQ_TOPIC=" + topic + ".dlq"}
	run(t, env, "", "migrate")
	// Webhooks: subscriptions need a key to seal their secrets, and the
	// receivers listen on loopback.
	secretKey := lastLine(run(t, env, "", "secrets", "generate"))
	prefix := topic + ".wh"
	// acme's webhook receivers (see below); the allow-list opens their
	// ports only.
	good, broken, gone := newReceiver(t, 200), newReceiver(t, 500), newReceiver(t, 410)
	// An OAuth 2.0 authorization server for the webhook with a wrong
	// client secret: its token requests are refused.
	auth := oauthtest.Start(t, "warehouse", "right-secret", time.Hour)
	allow := strings.Join([]string{good.srv.Listener.Addr().String(), broken.srv.Listener.Addr().String(), gone.srv.Listener.Addr().String(),
		auth.HTTP.Listener.Addr().String()}, ",")
	env = append(env, "BOUNCER_SECRET_KEY="+secretKey, "BOUNCER_WEBHOOK_ALLOW_NETS="+allow)
	deleteTopicsAtEnd(t, brokers, prefix+".retry.1s", prefix+".retry.2s", prefix+".dlq")

	key := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "acme", "--name", "browser-test")))
	if !strings.HasPrefix(key, "SG.") {
		t.Fatalf("keys create printed %q", key)
	}
	readOnly := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "acme", "--name", "read-only", "--scopes", "suppression.read")))
	hooksReadOnly := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "acme", "--name", "webhooks-read", "--scopes", "user.webhooks.event.settings.read")))
	globexKey := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "globex", "--name", "no-webhooks")))
	addr := freeAddr(t)
	start(t, "api", env, "api", "--listen", addr, "--ops-addr", "", "--check=false", "--publish-changes=false", "--rate-limit", "50")
	base := "http://" + addr
	waitFor(t, "bouncer api answering", 30*time.Second, func() (bool, error) {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false, err
		}
		res.Body.Close()
		return res.StatusCode == 200, nil
	})

	// acme's webhooks, made through the API before any event flows: one
	// receiver that takes everything, one answering 500 (its batches run
	// out of retries and are given up), one answering 410 (disabled at
	// once), and one switched off.
	hooks := []hookSpec{
		{Name: "Main receiver", URL: good.url(), Types: `"processed":true,"dropped":true,"delivered":true,"deferred":true,"bounce":true`, Enabled: true, State: "active"},
		{Name: "Analytics (broken)", URL: broken.url(), Types: `"bounce":true,"deferred":true`, Enabled: true, State: "active"},
		{Name: "Old CRM", URL: gone.url(), Types: `"dropped":true`, Enabled: true, State: "disabled", Reason: "410"},
		{Name: "Paused", URL: good.url() + "/paused", Types: `"delivered":true`, Enabled: false, State: "off"},
		{Name: "Warehouse (wrong OAuth secret)", URL: good.url() + "/oauth", Enabled: true, State: "active", OAuth: "failing",
			Types: `"deferred":true,"oauth_client_id":"warehouse","oauth_client_secret":"wrong-secret","oauth_token_url":"` + auth.TokenURL + `"`},
	}
	for i := range hooks {
		hooks[i].ID = createWebhook(t, base, key, hooks[i])
	}

	// The events, through the real pipeline.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	events := seed(today)
	var lines strings.Builder
	for _, e := range events {
		b, _ := json.Marshal(e)
		lines.Write(b)
		lines.WriteByte('\n')
	}
	run(t, env, lines.String(), "produce", "--quiet", "--file", "-")
	start(t, "worker", append(env, "BOUNCER_WEBHOOK_TOPIC_PREFIX="+prefix, "BOUNCER_WEBHOOK_GROUP="+topic+".webhooks",
		"BOUNCER_WEBHOOK_RETRY_SCHEDULE=1s,2s", "BOUNCER_WEBHOOK_REFRESH=200ms", "BOUNCER_WEBHOOK_BREAKER_OPEN=1s",
		"BOUNCER_WEBHOOK_TIMEOUT=2s"), "worker", "--group", topic+".sink", "--ops-addr", "")
	ctx := context.Background()
	chCfg := clickhouse.Config{Addr: []string{chAddr}, Database: db}
	if err := chCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitFor(t, "the worker writing every event", 90*time.Second, func() (bool, error) {
		var n uint64
		err := store.Conn().QueryRow(ctx, "SELECT count() FROM events WHERE derived = 0").Scan(&n)
		return n == uint64(len(events)), fmt.Errorf("%d of %d events, %v", n, len(events), err)
	})

	// Webhook delivery settles: the good receiver has every acme event,
	// the broken and gone endpoints' events are all in failed batches,
	// and the delivery log stops growing.
	wantGood, wantBroken, wantGone, wantOAuth := map[string]bool{}, 0, 0, 0
	for _, e := range events {
		if e.AccountID != "acme" {
			continue
		}
		wantGood[e.SGEventID] = true
		switch e.Event {
		case "bounce", "deferred":
			wantBroken++
		case "dropped":
			wantGone++
		}
		if e.Event == "deferred" {
			wantOAuth++
		}
	}
	waitFor(t, "every acme event at the good receiver", 60*time.Second, func() (bool, error) {
		got := good.accepted()
		missing := 0
		for id := range wantGood {
			if !got[id] {
				missing++
			}
		}
		return missing == 0, fmt.Errorf("%d of %d events missing", missing, len(wantGood))
	})
	for _, w := range []struct {
		id   string
		want int
	}{{hooks[1].ID, wantBroken}, {hooks[2].ID, wantGone}, {hooks[4].ID, wantOAuth}} {
		waitFor(t, "failed batches holding every event of "+w.id, 60*time.Second, func() (bool, error) {
			var n uint64
			err := store.Conn().QueryRow(ctx, "SELECT sum(events) FROM (SELECT webhook_id, any(events) AS events FROM webhook_failed_batches "+
				"WHERE account_id = 'acme' AND endpoint_id = ? GROUP BY webhook_id)", w.id).Scan(&n)
			return n == uint64(w.want), fmt.Errorf("%d of %d events, %v", n, w.want, err)
		})
	}
	var logRows, sameSince = uint64(0), time.Now()
	waitFor(t, "the delivery log settled", 30*time.Second, func() (bool, error) {
		var n uint64
		if err := store.Conn().QueryRow(ctx, "SELECT count() FROM webhook_deliveries").Scan(&n); err != nil {
			return false, err
		}
		if n != logRows {
			logRows, sameSince = n, time.Now()
		}
		return n > 0 && time.Since(sameSince) > 3*time.Second, fmt.Errorf("%d rows", n)
	})
	for i := range hooks {
		hooks[i].expectFrom(t, store)
		t.Logf("webhook %s: %s, results %v, failed batches %d, circuit %v", hooks[i].Name, hooks[i].State, hooks[i].Results, hooks[i].Failed, hooks[i].Circuits)
	}
	if hooks[0].Results["ok"] == 0 || hooks[1].Results["http_error"] == 0 || hooks[1].Failed < 2 || hooks[2].Results["gone"] == 0 {
		t.Fatalf("the receivers did not produce the deliveries the test needs: %+v", hooks)
	}
	// The broken receiver is fixed; the page replays one of its batches.
	broken.status.Store(200)

	// A hard-bounced address of acme to search for and delete, and another
	// that must stay.
	var victim, keep string
	for _, e := range events {
		if e.AccountID == "acme" && e.Event == "bounce" && e.Type == "bounce" && strings.Contains(e.Reason, "does not exist") {
			if victim == "" {
				victim = e.Email
			} else if keep == "" {
				keep = e.Email
			}
		}
	}
	if on := listed(t, store, victim); !on {
		t.Fatalf("%s is not on the bounces list before the test", victim)
	}

	x := expect(events, "acme", today.AddDate(0, 0, -29), today)
	cfg := map[string]any{
		"baseURL": base, "apiKey": key, "readOnlyKey": readOnly, "wrongKey": key[:len(key)-4] + "AAAA", "chromium": chromium,
		"screenshots": os.Getenv("BROWSER_SCREENSHOTS"), "expect": x,
		"victim": victim, "victimPrefix": strings.ToLower(victim[:strings.IndexByte(victim, '@')]),
		"webhooks": hooks, "replayEndpoint": hooks[1].ID, "globexKey": globexKey, "hooksReadOnlyKey": hooksReadOnly,
	}
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	node := exec.Command("node", filepath.Join(repoRoot, "test", "browser", "dashboard.mjs"), cfgFile)
	node.Dir = repoRoot
	var out bytes.Buffer
	node.Stdout, node.Stderr = &out, &out
	runErr := node.Run()
	t.Logf("dashboard.mjs:\n%s", out.String())
	if runErr != nil {
		t.Fatalf("the browser part failed: %v", runErr)
	}

	// The replay went through the page: the batch has a replay id in
	// ClickHouse, and the (now fixed) receiver got it under that id.
	var replayIDs []string
	rows, err := store.Conn().Query(ctx, "SELECT replay_id FROM (SELECT webhook_id, argMax(replay_id, version) AS replay_id "+
		"FROM webhook_failed_batches WHERE account_id = 'acme' AND endpoint_id = ? GROUP BY webhook_id) WHERE replay_id != ''", hooks[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		replayIDs = append(replayIDs, id)
	}
	rows.Close()
	if len(replayIDs) != 1 {
		t.Errorf("replayed batches of %s in ClickHouse: %v, want the one replayed through the page", hooks[1].ID, replayIDs)
	}
	for _, id := range replayIDs {
		waitFor(t, "the replayed batch "+id+" at the receiver", 30*time.Second, func() (bool, error) {
			sts := broken.answersTo(id)
			return len(sts) > 0 && sts[len(sts)-1] == 200, fmt.Errorf("answers to %s: %v", id, sts)
		})
		waitFor(t, "the replay's attempt in the delivery log", 30*time.Second, func() (bool, error) {
			var n uint64
			err := store.Conn().QueryRow(ctx, "SELECT count() FROM webhook_deliveries WHERE endpoint_id = ? AND webhook_id = ? AND result = 'ok'", hooks[1].ID, id).Scan(&n)
			return n > 0, err
		})
	}

	// The delete went through the page; ClickHouse must agree.
	if listed(t, store, victim) {
		t.Errorf("%s deleted through the page is still on the bounces list in ClickHouse", victim)
	}
	if keep != "" && !listed(t, store, keep) {
		t.Errorf("%s, not deleted, is gone from the bounces list", keep)
	}
}

// listed reports whether email is currently on acme's bounces list, read
// from the suppressions table itself.
func listed(t *testing.T, store *clickhouse.Store, email string) bool {
	t.Helper()
	var deleted []uint8
	rows, err := store.Conn().Query(context.Background(),
		"SELECT argMax(deleted, version) FROM suppressions WHERE account_id = 'acme' AND list = 'bounces' AND group_id = 0 AND email_norm = ? GROUP BY email_norm",
		strings.ToLower(email))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var d uint8
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		deleted = append(deleted, d)
	}
	return len(deleted) == 1 && deleted[0] == 0
}

func lastLine(s string) string {
	var last string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last
}

// receiver is a loopback webhook endpoint answering status (changeable)
// and remembering what it got.
type receiver struct {
	srv     *httptest.Server
	status  atomic.Int32
	mu      sync.Mutex
	events  map[string]bool  // sg_event_ids of batches answered 2xx
	answers map[string][]int // webhook-id -> statuses answered, in order
}

func newReceiver(t *testing.T, status int) *receiver {
	rc := &receiver{events: map[string]bool{}, answers: map[string][]int{}}
	rc.status.Store(int32(status))
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			SGEventID string `json:"sg_event_id"`
		}
		err := json.NewDecoder(r.Body).Decode(&batch)
		st := int(rc.status.Load())
		if err != nil {
			st = 400
		}
		rc.mu.Lock()
		id := r.Header.Get("webhook-id")
		rc.answers[id] = append(rc.answers[id], st)
		if st/100 == 2 {
			for _, e := range batch {
				rc.events[e.SGEventID] = true
			}
		}
		rc.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL }

func (rc *receiver) accepted() map[string]bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return maps.Clone(rc.events)
}

func (rc *receiver) answersTo(webhookID string) []int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.answers[webhookID])
}

// hookSpec is a webhook the test makes and what the page must show of it,
// read from ClickHouse (expectFrom), not through the API.
type hookSpec struct {
	ID, Name, URL string
	Types         string `json:"-"`
	Enabled       bool   `json:"-"`
	// State is what the test's receivers make of it; Reason a part of
	// the disabled reason; OAuth the state of its token requests ("" for
	// a webhook without OAuth).
	State, Reason, OAuth string
	// Results counts delivery log rows by result.
	Results                  map[string]int
	LastSuccess, LastFailure int64
	// Circuits are the breaker states logged at the newest row's second
	// (several rows can share it); empty before any delivery.
	Circuits []string
	// Failed counts the batches given up.
	Failed int
}

func createWebhook(t *testing.T, base, key string, h hookSpec) string {
	t.Helper()
	body := fmt.Sprintf(`{"enabled":%t,"url":%q,"friendly_name":%q,%s}`, h.Enabled, h.URL, h.Name, h.Types)
	req, _ := http.NewRequest("POST", base+"/v3/user/webhooks/event/settings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 201 || json.Unmarshal(b, &out) != nil || out.ID == "" {
		t.Fatalf("create webhook %s: %d %s", h.Name, res.StatusCode, b)
	}
	return out.ID
}

// expectFrom reads what the page must show of h from ClickHouse.
func (h *hookSpec) expectFrom(t *testing.T, store *clickhouse.Store) {
	t.Helper()
	ctx := context.Background()
	conn := store.Conn()
	h.Results = map[string]int{}
	rows, err := conn.Query(ctx, "SELECT result, count() FROM webhook_deliveries WHERE account_id = 'acme' AND endpoint_id = ? GROUP BY result", h.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var result string
		var n uint64
		if err := rows.Scan(&result, &n); err != nil {
			t.Fatal(err)
		}
		h.Results[result] = int(n)
	}
	rows.Close()
	var ok, fail uint32
	if err := conn.QueryRow(ctx, "SELECT toUInt32(maxIf(at, result = 'ok')), toUInt32(maxIf(at, result IN ('http_error', 'timeout', 'connection', 'gone', 'oauth'))) "+
		"FROM webhook_deliveries WHERE account_id = 'acme' AND endpoint_id = ?", h.ID).Scan(&ok, &fail); err != nil {
		t.Fatal(err)
	}
	h.LastSuccess, h.LastFailure = int64(ok), int64(fail)
	h.Circuits = []string{}
	if err := conn.QueryRow(ctx, "SELECT groupUniqArray(circuit) FROM webhook_deliveries WHERE account_id = 'acme' AND endpoint_id = ? AND circuit != '' "+
		"AND at = (SELECT max(at) FROM webhook_deliveries WHERE account_id = 'acme' AND endpoint_id = ? AND circuit != '')", h.ID, h.ID).Scan(&h.Circuits); err != nil {
		t.Fatal(err)
	}
	var failed uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(webhook_id) FROM webhook_failed_batches WHERE account_id = 'acme' AND endpoint_id = ?", h.ID).Scan(&failed); err != nil {
		t.Fatal(err)
	}
	h.Failed = int(failed)
}

// deleteTopicsAtEnd deletes the webhook retry and dead-letter topics the
// worker made (best effort).
func deleteTopicsAtEnd(t *testing.T, brokers string, topics ...string) {
	t.Cleanup(func() {
		c, err := kafka.Dial("tcp", testenv.Brokers(brokers)[0])
		if err != nil {
			return
		}
		defer c.Close()
		ctrl, err := c.Controller()
		if err != nil {
			return
		}
		cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
		if err != nil {
			return
		}
		defer cc.Close()
		cc.DeleteTopics(topics...)
	})
}
