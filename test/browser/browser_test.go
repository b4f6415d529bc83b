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
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
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
	start(t, "worker", env, "worker", "--group", topic+".sink", "--ops-addr", "")
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

	key := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "acme", "--name", "browser-test")))
	if !strings.HasPrefix(key, "SG.") {
		t.Fatalf("keys create printed %q", key)
	}
	readOnly := strings.TrimSpace(lastLine(run(t, env, "", "keys", "create", "--account", "acme", "--name", "read-only", "--scopes", "suppression.read")))
	addr := freeAddr(t)
	start(t, "api", env, "api", "--listen", addr, "--check=false", "--publish-changes=false", "--rate-limit", "50")
	base := "http://" + addr
	waitFor(t, "bouncer api answering", 30*time.Second, func() (bool, error) {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false, err
		}
		res.Body.Close()
		return res.StatusCode == 200, nil
	})

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
