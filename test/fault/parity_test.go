//go:build fault

package fault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
)

// Route-by-route parity (issue 12): one stream goes into a single
// ClickHouse server and into the cluster (one topic, a consumer group,
// worker and API per side), the same writes go through both APIs, and
// every read route of the API's route table answers the same on both, as
// do `bouncer summary`, `bouncer stats` and an erasure's effect. The route
// table is walked: a data route added later without a request here fails
// the test.

const (
	parityEvents   = 20_000
	parityAccounts = "acme,globex"
)

// paritySide is one of the two stores compared: its run (topic, database,
// workers), environment, API and keys.
type paritySide struct {
	name    string
	r       *run
	env     []string
	api     string
	keys    map[string]string // account -> API key
	cookie  *http.Cookie      // acme's dashboard session
	csrf    string
	hook    string        // acme's webhook subscription id
	policy  string        // acme's webhook security policy id
	recv    *hookReceiver // that subscription's endpoint
	replace []string      // side-specific strings -> placeholders, for the comparison
}

// hookReceiver is a webhook endpoint that accepts everything and keeps the
// sg_event_ids it got, and for each the event types and webhook-ids (the
// batch id, the same on every retry) it came in, to tell a derived drop
// (the same sg_event_id as its processed event) and a retried batch from
// an event sent in two batches.
type hookReceiver struct {
	addr string
	mu   sync.Mutex
	got  map[string]int
	how  map[string][]string // sg_event_id -> "event webhook-id" per copy
}

func newHookReceiver(t *testing.T) *hookReceiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{addr: l.Addr().String(), got: map[string]int{}, how: map[string][]string{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var evs []struct {
			ID    string `json:"sg_event_id"`
			Event string `json:"event"`
		}
		if err := json.NewDecoder(r.Body).Decode(&evs); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		for _, e := range evs {
			h.got[e.ID]++
			h.how[e.ID] = append(h.how[e.ID], e.Event+" "+r.Header.Get("webhook-id"))
		}
		h.mu.Unlock()
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

// total is the number of events received, repeats included.
func (h *hookReceiver) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, v := range h.got {
		n += v
	}
	return n
}

// repeats says how the ids got more than once came: as events of
// different types (a processed event and its derived drop share the
// sg_event_id), in one batch sent again (the same webhook-id: a retry or a
// slow attempt's parked copy) or in batches of their own (the event was
// batched twice: consumed again).
func (h *hookReceiver) repeats(ids []string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var types, sameBatch, otherBatch int
	example := map[string]string{}
	for _, id := range ids {
		seen := map[string]map[string]int{} // event -> webhook-id -> copies
		for _, c := range h.how[id] {
			ev, hook, _ := strings.Cut(c, " ")
			if seen[ev] == nil {
				seen[ev] = map[string]int{}
			}
			seen[ev][hook]++
		}
		kind := "types"
		for _, hooks := range seen {
			if len(hooks) > 1 {
				kind = "other batch"
				break
			}
			for _, n := range hooks {
				if n > 1 {
					kind = "same batch"
				}
			}
		}
		switch kind {
		case "types":
			types++
		case "same batch":
			sameBatch++
		default:
			otherBatch++
		}
		if example[kind] == "" {
			example[kind] = id + " " + strings.Join(h.how[id], ", ")
		}
	}
	return fmt.Sprintf("%d as two event types, %d in one batch sent again, %d in two batches (examples %v)",
		types, sameBatch, otherBatch, example)
}

func (h *hookReceiver) ids() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.got))
	for k, v := range h.got {
		out[k] = v
	}
	return out
}

// singleServer is a single-node ClickHouse for the parity test: scripts/test's
// (CLICKHOUSE_ADDR), else an instance of its own.
func singleServer(t *testing.T) string {
	if a := os.Getenv("CLICKHOUSE_ADDR"); a != "" && !strings.Contains(a, ",") {
		return a
	}
	return services(t, "fault-parity").clickhouse
}

func (ci *clusterInstance) parity(t *testing.T) {
	start := time.Now()
	suffix := fmt.Sprint(time.Now().Unix())
	topic, db := "cluster.parity."+suffix, "parity_"+suffix
	secret := make([]byte, 32)
	rand.Read(secret)
	single := &instance{name: "single", brokers: ci.brokers, clickhouse: singleServer(t)}
	var sides [2]*paritySide
	for i, s := range []struct {
		name  string
		inst  *instance
		extra []string
	}{{"single", single, nil}, {"cluster", &ci.instance, []string{"CLICKHOUSE_CLUSTER=bouncer"}}} {
		r := newRun(t, s.inst)
		r.topic, r.db = topic, db
		p := topic + "." + s.name
		side := &paritySide{name: s.name, r: r, keys: map[string]string{}, recv: newHookReceiver(t)}
		r.extra = append(s.extra, "BOUNCER_SINK_GROUP="+p+".sink", "BOUNCER_DLQ_TOPIC="+p+".dlq",
			"BOUNCER_CHANGELOG_TOPIC="+p+".changes", "BOUNCER_WEBHOOK_GROUP="+p+".webhooks",
			"BOUNCER_WEBHOOK_TOPIC_PREFIX="+p+".wh", "BOUNCER_WEBHOOK_CLAIMS_TOPIC="+p+".claims",
			"BOUNCER_SECRET_KEY="+base64.StdEncoding.EncodeToString(secret), "BOUNCER_WEBHOOK_ALLOW_NETS="+side.recv.addr,
			"BOUNCER_WEBHOOK_REFRESH=500ms", "BOUNCER_WEBHOOK_BATCH_EVENTS=1000", "BOUNCER_WEBHOOK_BATCH_WAIT=1s",
			"BOUNCER_WEBHOOK_SLOW_AFTER=10s", "BOUNCER_WEBHOOK_TIMEOUT=15s", "BOUNCER_API_RATE_LIMIT=100000", "BOUNCER_API_OPS_ADDR=127.0.0.1:0")
		side.env = r.env()
		side.replace = append(side.replace, side.recv.addr, "<receiver>")
		if s.name == "single" {
			t.Cleanup(func() {
				if !t.Failed() {
					dropRun(t, r)
				}
			})
		}
		side.bin(t, "migrate")
		for _, acct := range strings.Split(parityAccounts, ",") {
			side.keys[acct] = regexp.MustCompile(`(?m)^SG\.\S+$`).FindString(side.bin(t, "keys", "create", "--account", acct, "--name", "parity"))
			if side.keys[acct] == "" {
				t.Fatalf("%s: keys create printed no key", s.name)
			}
		}
		side.startAPI(t)
		sides[i] = side
	}
	t.Logf("single server %s, database %s; topic %s; both migrated and serving in %s", single.clickhouse, db, topic, time.Since(start).Round(time.Second))

	// acme subscribes a receiver on each side before the stream, so both
	// deliver every acme event; the ids differ, and are compared as <hook>.
	for _, s := range sides {
		code, body := s.call(t, "acme", "POST", "/v3/user/webhooks/event/settings", `{"enabled":true,"url":"http://`+s.recv.addr+
			`/hook","processed":true,"dropped":true,"delivered":true,"deferred":true,"bounce":true,"open":true,"click":true,`+
			`"spam_report":true,"unsubscribe":true,"group_unsubscribe":true,"group_resubscribe":true,"friendly_name":"parity"}`)
		var created struct{ ID string }
		if code != 201 || json.Unmarshal(body, &created) != nil || created.ID == "" {
			t.Fatalf("%s: create webhook: %d %s", s.name, code, body)
		}
		s.hook = created.ID
		s.replace = append(s.replace, created.ID, "<hook>")
		code, body = s.call(t, "acme", "POST", "/v3/user/webhooks/security/policies", `{"name":"parity","signature":{"enabled":true}}`)
		var policy struct{ Policy struct{ ID string } }
		if code != 201 || json.Unmarshal(body, &policy) != nil || policy.Policy.ID == "" {
			t.Fatalf("%s: create security policy: %d %s", s.name, code, body)
		}
		s.policy = policy.Policy.ID
		s.replace = append(s.replace, policy.Policy.ID, "<policy>")
		s.login(t)
	}

	// The stream: timestamps over the last four days, two accounts, one
	// message in 1000 bad. Each side's worker reads it in its own group.
	// (bouncer produce creates the topic: started first, the workers would
	// create it, and a producer right after may find it unknown to its
	// broker.)
	produceStart := time.Now()
	paritySend(t, ci.brokers, topic)
	for _, s := range sides {
		s.r.startWorkerEnv("worker-"+s.name, s.env)
	}
	messages := topicEnd(t, ci.brokers, topic)
	if messages < parityEvents {
		t.Fatalf("the topic holds %d messages, fewer than the %d produced", messages, parityEvents)
	}
	for _, s := range sides {
		s.r.waitStored(s.r.conn(), messages, 5*time.Minute)
	}
	t.Logf("%d messages stored on both sides %s after the stream started", messages, time.Since(produceStart).Round(time.Second))
	// Each side delivered every acme event to its receiver (checked against
	// what the single server stored).
	acmeEvents := sides[0].acmeEventIDs(t)
	for _, s := range sides {
		waitUntil(t, 2*time.Minute, s.name+": every acme event delivered to the webhook", func() bool {
			got := s.recv.ids()
			for id := range acmeEvents {
				if got[id] == 0 {
					return false
				}
			}
			return true
		})
		var extra, twice []string
		got := s.recv.ids()
		for id, n := range got {
			if !acmeEvents[id] {
				extra = append(extra, id)
			}
			if n > 1 {
				twice = append(twice, id)
			}
		}
		if len(extra) > 0 || len(twice) > 0 {
			t.Logf("%s: the webhook got %d ids, %d not among acme's stored events (%.5v), %d more than once (%.5v): %s",
				s.name, len(got), len(extra), extra, len(twice), twice, s.recv.repeats(twice))
			log, _ := os.ReadFile(filepath.Join(s.r.logs, "worker-"+s.name+".log"))
			t.Logf("%s: its worker staged a webhook batch again %d times, abandoned %d on revocation", s.name,
				bytes.Count(log, []byte("staging it again")), bytes.Count(log, []byte("abandoned batch on revocation")))
		}
	}

	t.Logf("every acme event delivered on both sides %s after the stream started", time.Since(produceStart).Round(time.Second))

	// Reads after the stream, then the same writes on both sides, then the
	// reads again: lists changed by the API, an erasure, a bulk delete.
	covered := map[string]bool{}
	pick := sides[0].picks(t)
	ci.syncReplicas(t, db)
	compareAll(t, sides, pick, covered, "after the stream")
	for _, s := range sides {
		s.writes(t, pick)
	}
	// The erasures run through the API (acme) and `bouncer erase` (globex).
	ci.syncReplicas(t, db)
	// Changed rules, applied to what both sides stored: the same diff and
	// list changes, and (in the reads below) the same stats and lists.
	reclassifyBoth(t, sides)
	ci.syncReplicas(t, db)
	compareAll(t, sides, pick, covered, "after the writes and erasures")
	compareCLI(t, sides)

	// Every data route of the table was asked.
	var missing []string
	for _, rt := range api.Routes() {
		k := rt.Method + " " + rt.Path
		if covered[k] || parityExempt[k] != "" {
			continue
		}
		if rt.Method == "GET" && (rt.Auth || strings.HasPrefix(rt.Path, "/ui/session")) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("read routes the parity test does not ask (add a request to parityRequests or a reason to parityExempt): %v", missing)
	}
}

// syncReplicas waits until every replica of the database's tables has
// fetched what the others hold (SYSTEM SYNC REPLICA on each server). Reads
// through a Distributed table go to any replica of a shard, and a replica
// trails the one written to by its replication lag (seconds on a loaded
// machine): without this, a read right after a write can miss it on the
// cluster (docs/cluster.md).
func (ci *clusterInstance) syncReplicas(t *testing.T, db string) {
	t.Helper()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, a := range ci.addrs {
		c, err := ch.Open(&ch.Options{Addr: []string{a}, DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, "SELECT table FROM system.replicas WHERE database = ?", db)
		if err != nil {
			t.Fatalf("replicas of %s on %s: %v", db, a, err)
		}
		var tables []string
		for rows.Next() {
			var name string
			rows.Scan(&name)
			tables = append(tables, name)
		}
		rows.Close()
		for _, tb := range tables {
			if err := c.Exec(ctx, "SYSTEM SYNC REPLICA "+db+"."+tb); err != nil {
				t.Fatalf("SYSTEM SYNC REPLICA %s.%s on %s: %v", db, tb, a, err)
			}
		}
		c.Close()
	}
	t.Logf("replicas in sync in %s", time.Since(t0).Round(100*time.Millisecond))
}

// paritySend writes the parity stream: bouncer produce's generator over
// the last four days, one message in 1000 bad, but every recipient
// different. With a recipient twice, a processed event after a bounce gets
// a derived drop or not depending on timing (the suppression index follows
// the change log, asynchronously), on one server as on the cluster: the
// counts would differ between two runs, not between the engines.
func paritySend(t *testing.T, brokers, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn := consumer.Conn{Brokers: strings.Split(brokers, ",")}
	if err := consumer.EnsureTopic(ctx, conn, topic, 4); err != nil {
		t.Fatal(err)
	}
	g := eventgen.New(12)
	g.Accounts = strings.Split(parityAccounts, ",")
	g.Recipients = 1 << 40
	g.BaseTime = time.Now().Add(-96 * time.Hour).Unix()
	g.Step = 96 * time.Hour / parityEvents
	w := &kafka.Writer{Addr: kafka.TCP(conn.Brokers...), Topic: topic, Balancer: &kafka.Hash{},
		BatchSize: 1000, BatchTimeout: 20 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	msgs := make([]kafka.Message, 0, parityEvents)
	for i := 1; i <= parityEvents; i++ {
		if i%badEvery == 0 {
			msgs = append(msgs, kafka.Message{Key: []byte("bad"), Value: eventgen.Bad(i / badEvery)})
			continue
		}
		v := g.Message(nil, 1)
		msgs = append(msgs, kafka.Message{Key: eventgen.RecipientKey(v), Value: v})
	}
	for i := 0; i < len(msgs); i += 2000 {
		if err := consumer.WriteRetrying(ctx, w, msgs[i:min(i+2000, len(msgs))], time.Minute, nil); err != nil {
			t.Fatalf("write the parity stream to %s: %v", topic, err)
		}
	}
}

// parityExempt are the GET routes of the table that are not compared, and why.
var parityExempt = map[string]string{
	"GET /api/bounces.delete.json":              "a delete (v2 deletes by GET); done among the writes",
	"GET /v3/messages/download/{download_uuid}": "a download's id is its side's own; TestActivityDownload checks the CSV against the activity query",
}

func (s *paritySide) bin(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: bouncer %s: %v\n%s", s.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (s *paritySide) startAPI(t *testing.T) {
	t.Helper()
	s.api = freeAddr(t)
	f, err := os.Create(filepath.Join(s.r.logs, "api-"+s.name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "api")
	cmd.Env = append(s.env, "BOUNCER_API_ADDR="+s.api)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
	waitUntil(t, time.Minute, s.name+": the API answers", func() bool {
		resp, err := http.Get("http://" + s.api + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// call sends a request with the account's key ("session": acme's
// dashboard session).
func (s *paritySide) call(t *testing.T, acct, method, path, body string) (int, []byte) {
	t.Helper()
	code, b, err := s.do(acct, method, path, body)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", s.name, method, path, err)
	}
	return code, b
}

func (s *paritySide) do(acct, method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+s.api+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if acct == "session" {
		req.AddCookie(s.cookie)
		req.Header.Set("X-CSRF-Token", s.csrf)
	} else {
		req.Header.Set("Authorization", "Bearer "+s.keys[acct])
	}
	if strings.HasSuffix(path, "/import") || strings.Contains(path, "/import?") {
		req.Header.Set("Content-Type", "text/csv")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// login opens acme's dashboard session, as the dashboard does.
func (s *paritySide) login(t *testing.T) {
	t.Helper()
	resp, err := http.Post("http://"+s.api+"/ui/session", "application/json", strings.NewReader(`{"api_key":"`+s.keys["acme"]+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		CSRF string `json:"csrf_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 || json.Unmarshal(b, &info) != nil || len(resp.Cookies()) == 0 {
		t.Fatalf("%s: dashboard login: %d %s", s.name, resp.StatusCode, b)
	}
	s.cookie, s.csrf = resp.Cookies()[0], info.CSRF
}

func (s *paritySide) acmeEventIDs(t *testing.T) map[string]bool {
	t.Helper()
	c := s.r.conn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := c.Query(ctx, "SELECT DISTINCT sg_event_id FROM "+s.r.db+".events WHERE derived = 0 AND account_id = 'acme'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	if len(out) < parityEvents/4 {
		t.Fatalf("only %d acme events stored", len(out))
	}
	return out
}

// parityPicks are values the requests need, read from the single server's
// answers: addresses on each list, message ids, the date range.
type parityPicks struct {
	start, end string
	onList     map[string][]string // list -> addresses (acme)
	msgIDs     []string
	groupUnsub []string // addresses unsubscribed from a group (acme)
	toEmail    string
	erased     map[string]string // account -> address erased
}

func (s *paritySide) picks(t *testing.T) *parityPicks {
	t.Helper()
	now := time.Now().UTC()
	p := &parityPicks{start: now.AddDate(0, 0, -5).Format(time.DateOnly), end: now.AddDate(0, 0, 1).Format(time.DateOnly),
		onList: map[string][]string{}, erased: map[string]string{}}
	for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"} {
		code, body := s.call(t, "acme", "GET", "/v3/suppression/"+l+"?limit=500", "")
		var es []struct{ Email string }
		if code != 200 || json.Unmarshal(body, &es) != nil {
			t.Fatalf("list %s: %d %.300s", l, code, body)
		}
		for i := 0; i < len(es) && i < 3; i++ {
			p.onList[l] = append(p.onList[l], es[i].Email)
		}
		if l != "invalid_emails" && len(p.onList[l]) == 0 {
			t.Fatalf("the stream put nobody on %s", l)
		}
	}
	code, body := s.call(t, "acme", "GET", "/v3/asm/suppressions?limit=3", "")
	var gs []struct{ Email string }
	if code != 200 || json.Unmarshal(body, &gs) != nil || len(gs) == 0 {
		t.Fatalf("group unsubscribes: %d %.300s", code, body)
	}
	for _, g := range gs {
		p.groupUnsub = append(p.groupUnsub, g.Email)
	}
	code, body = s.call(t, "acme", "GET", "/v3/messages?limit=50&query="+url.QueryEscape(`status="delivered"`), "")
	var ms struct {
		Messages []struct {
			MsgID   string `json:"msg_id"`
			ToEmail string `json:"to_email"`
		}
	}
	if code != 200 || json.Unmarshal(body, &ms) != nil || len(ms.Messages) < 3 {
		t.Fatalf("activity: %d %.300s", code, body)
	}
	for _, m := range ms.Messages[:3] {
		p.msgIDs = append(p.msgIDs, m.MsgID)
	}
	p.toEmail = ms.Messages[0].ToEmail
	// An address of each account with events, erased later.
	c := s.r.conn()
	for _, acct := range strings.Split(parityAccounts, ",") {
		var email string
		var n uint64
		q := "SELECT email_norm, count() AS n FROM " + s.r.db + ".events WHERE account_id = '" + acct +
			"' GROUP BY email_norm ORDER BY n DESC, email_norm LIMIT 1"
		if err := c.QueryRow(context.Background(), q).Scan(&email, &n); err != nil {
			t.Fatal(err)
		}
		p.erased[acct] = email
	}
	return p
}

// writes changes lists through the API and erases one address of each
// account, the same on both sides. Entries with an explicit created time
// (the CSV import) compare exactly; those the API stamps with its clock
// are in apiStamped.
func (s *paritySide) writes(t *testing.T, p *parityPicks) {
	t.Helper()
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v3/asm/suppressions/global", `{"recipient_emails":["parity-g1@example.org","parity-g2@example.org"]}`},
		{"DELETE", "/v3/asm/suppressions/global/parity-g2@example.org", ""},
		{"POST", "/v3/asm/groups/2/suppressions", `{"recipient_emails":["parity-a1@example.org","` + p.onList["bounces"][0] + `"]}`},
		{"DELETE", "/v3/asm/groups/2/suppressions/parity-a1@example.org", ""},
		{"DELETE", "/v3/suppression/bounces/" + p.onList["bounces"][1], ""},
		{"DELETE", "/v3/suppression/blocks", `{"emails":["` + p.onList["blocks"][0] + `"]}`},
		{"POST", "/bouncer/v1/suppressions/bounces/import", "email,created,status,reason\nparity-b1@example.org,1764300000,5.1.1,550 5.1.1 user unknown\nparity-b2@example.org,2025-11-29 10:00:00,5.1.1,550 no such user\n"},
		{"POST", "/bouncer/v1/suppressions/unsubscribes/import?group_id=3", "email,created\nparity-u1@example.org,1764300000\n"},
		{"PATCH", "/v3/mail_settings/forward_bounce", `{"enabled":true,"email":"bounces@acme.example"}`},
		{"PATCH", "/v3/mail_settings/bounce_purge", `{"enabled":true,"hard_bounces":30,"soft_bounces":7}`},
		{"POST", "/v3/asm/groups", `{"name":"parity","description":"made by the parity test","is_default":false}`},
		{"POST", "/v3/asm/groups/4/suppressions", `{"recipient_emails":["` + p.onList["unsubscribes"][0] + `"]}`},
		{"GET", "/api/bounces.delete.json?email=" + url.QueryEscape(p.onList["bounces"][2]), ""},
		{"POST", "/bouncer/v1/privacy/erasures", `{"email":"` + p.erased["acme"] + `"}`},
	} {
		code, body := s.call(t, "acme", w.method, w.path, w.body)
		if code/100 != 2 {
			t.Fatalf("%s: %s %s: %d %s", s.name, w.method, w.path, code, body)
		}
	}
	s.bin(t, "erase", "--account", "globex", "--email", p.erased["globex"])
	// Listed from the stream, unsubscribed from groups 2 and 4 by the API.
	apiStamped[p.onList["bounces"][0]] = true
	apiStamped[p.onList["unsubscribes"][0]] = true
}

// apiStamped are addresses whose list entries the API stamped with its own
// clock (created): their created times are not compared. (Their list
// entries from the stream keep event times, but a comparison by address
// cannot tell them apart; the exports still compare every other entry.)
var apiStamped = map[string]bool{"parity-g1@example.org": true, "parity-g2@example.org": true, "parity-a1@example.org": true}

// parityRequest is one read, by route pattern; mask names JSON keys whose
// values are the side's own (times the API stamped, random secrets).
type parityRequest struct {
	route string // "GET /v3/stats", as in the route table
	acct  string // "acme", "globex" or "session" (acme's dashboard cookie)
	path  string
	body  string
	mask  []string
	// deliveries: compare the events delivered ok, not the log's rows
	// (batches are cut by timing); with batches of up to 1000 events the
	// whole log fits in one answer.
	deliveries bool
}

func parityRequests(p *parityPicks) []parityRequest {
	d := "start_date=" + p.start + "&end_date=" + p.end
	var rs []parityRequest
	add := func(route, acct, path string, mask ...string) {
		rs = append(rs, parityRequest{route: route, acct: acct, path: path, mask: mask})
	}
	for _, acct := range []string{"acme", "globex"} {
		for _, by := range []string{"day", "week", "month"} {
			add("GET /v3/stats", acct, "/v3/stats?"+d+"&aggregated_by="+by)
			add("GET /v3/categories/stats", acct, "/v3/categories/stats?"+d+"&aggregated_by="+by+"&categories=newsletter&categories=promo&categories=receipt")
			add("GET /v3/mailbox_providers/stats", acct, "/v3/mailbox_providers/stats?"+d+"&aggregated_by="+by)
			add("GET /bouncer/v1/stats/domains", acct, "/bouncer/v1/stats/domains?"+d+"&aggregated_by="+by+"&domains=gmail.com&domains=yahoo.com&domains=example-corp.com")
		}
		add("GET /v3/stats", acct, "/v3/stats?"+d+"&limit=2&offset=1")
		add("GET /v3/mailbox_providers/stats", acct, "/v3/mailbox_providers/stats?"+d+"&mailbox_providers=gmail")
		for _, by := range []string{"day", "month"} {
			add("GET /v3/browsers/stats", acct, "/v3/browsers/stats?"+d+"&aggregated_by="+by)
			add("GET /v3/clients/stats", acct, "/v3/clients/stats?"+d+"&aggregated_by="+by)
			add("GET /v3/devices/stats", acct, "/v3/devices/stats?"+d+"&aggregated_by="+by)
			for _, ct := range []string{"phone", "desktop", "webmail"} {
				add("GET /v3/clients/{client_type}/stats", acct, "/v3/clients/"+ct+"/stats?"+d+"&aggregated_by="+by)
			}
		}
		// Neither side has a geoip database: both answer that it is needed.
		add("GET /v3/geo/stats", acct, "/v3/geo/stats?"+d+"&country=US")
		add("GET /v3/categories", acct, "/v3/categories?limit=100")
		add("GET /v3/categories", acct, "/v3/categories?category=ne&limit=2&offset=0")
		add("GET /v3/categories/stats/sums", acct, "/v3/categories/stats/sums?"+d+"&limit=50")
		add("GET /v3/categories/stats/sums", acct, "/v3/categories/stats/sums?"+d+"&sort_by_metric=bounces&sort_by_direction=asc&limit=3&offset=1")
		add("GET /bouncer/v1/stats/bounce_reasons", acct, "/bouncer/v1/stats/bounce_reasons?"+d+"&limit=100")
		add("GET /bouncer/v1/stats/top_domains", acct, "/bouncer/v1/stats/top_domains?"+d+"&limit=100")
		add("GET /bouncer/v1/classify/unmatched", acct, "/bouncer/v1/classify/unmatched?"+d+"&limit=100")
		add("GET /v3/suppression/bounces/classifications", acct, "/v3/suppression/bounces/classifications?"+d)
		for _, c := range []string{"Invalid Address", "Mailbox Unavailable", "Reputation", "Technical Failure"} {
			add("GET /v3/suppression/bounces/classifications/{classification}", acct,
				"/v3/suppression/bounces/classifications/"+url.PathEscape(c)+"?"+d)
		}
		add("GET /v3/messages", acct, "/v3/messages?limit=1000")
		for _, q := range []string{`status="delivered"`, `status="not_delivered"`, `status="processed"`, `to_email="` + p.toEmail + `"`,
			`to_email="` + p.erased[acct] + `"`} {
			add("GET /v3/messages", acct, "/v3/messages?limit=1000&query="+url.QueryEscape(q))
		}
		// A time filter: read by the activity windows or, without them,
		// from the account's events; a small limit is answered from the
		// range's last part when it has enough matches.
		during := ` AND last_event_time BETWEEN TIMESTAMP "` + p.start + `T00:00:00Z" AND TIMESTAMP "` + p.end + `T00:00:00Z"`
		for _, q := range []string{`status="not_delivered"` + during, `status="delivered"` + during} {
			add("GET /v3/messages", acct, "/v3/messages?limit=1000&query="+url.QueryEscape(q))
			add("GET /v3/messages", acct, "/v3/messages?limit=3&query="+url.QueryEscape(q))
		}
		for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"} {
			add("GET /v3/suppression/"+l, acct, "/v3/suppression/"+l+"?limit=500")
			add("GET /v3/suppression/"+l, acct, "/v3/suppression/"+l+"?limit=7&offset=5")
			add("GET /bouncer/v1/suppressions/{list}/export", acct, "/bouncer/v1/suppressions/"+l+"/export")
		}
		add("GET /bouncer/v1/suppressions/{list}/export", acct, "/bouncer/v1/suppressions/unsubscribes/export?group_id=3")
		for g := 1; g <= 3; g++ {
			add("GET /v3/asm/groups/{group_id}/suppressions", acct, fmt.Sprintf("/v3/asm/groups/%d/suppressions", g))
		}
		add("GET /v3/asm/groups", acct, "/v3/asm/groups")
		add("GET /v3/asm/groups", acct, "/v3/asm/groups?id=2&id=4")
		for g := 1; g <= 4; g++ {
			add("GET /v3/asm/groups/{group_id}", acct, fmt.Sprintf("/v3/asm/groups/%d", g))
		}
		add("GET /v3/asm/suppressions", acct, "/v3/asm/suppressions")
		add("GET /v3/asm/suppressions", acct, "/v3/asm/suppressions?limit=7&offset=3")
		for _, q := range []string{"date=1", "date=1&type=hard", "limit=9&offset=4", "date=1&start_date=" + p.start + "&end_date=" + p.end, "days=2"} {
			add("GET /api/bounces.get.json", acct, "/api/bounces.get.json?"+q)
			add("GET /api/bounces.count.json", acct, "/api/bounces.count.json?"+q)
		}
		add("GET /bouncer/v1/privacy/erasures", acct, "/bouncer/v1/privacy/erasures", "id", "erased_at", "requested_by")
		add("GET /v3/mail_settings/forward_bounce", acct, "/v3/mail_settings/forward_bounce")
		add("GET /v3/mail_settings/bounce_purge", acct, "/v3/mail_settings/bounce_purge")
		add("GET /v3/user/webhooks/security/policies", acct, "/v3/user/webhooks/security/policies", "public_key", "created_at", "updated_at")
		add("GET /v3/user/webhooks/event/settings/all", acct, "/v3/user/webhooks/event/settings/all", "created_date", "updated_date")
	}
	// Lookups of single addresses (acme's lists, an erased one, one
	// nowhere), and the batch check.
	var emails []string
	for _, l := range []string{"bounces", "blocks", "invalid_emails", "spam_reports"} {
		for _, e := range append(append([]string(nil), p.onList[l]...), p.erased["acme"], "nobody@example.org") {
			add("GET /v3/suppression/"+l+"/{email}", "acme", "/v3/suppression/"+l+"/"+url.PathEscape(e))
			emails = append(emails, e)
		}
	}
	for _, e := range append(append([]string{"parity-g1@example.org", "parity-g2@example.org"}, p.onList["unsubscribes"]...), p.erased["acme"]) {
		add("GET /v3/asm/suppressions/global/{email}", "acme", "/v3/asm/suppressions/global/"+url.PathEscape(e))
		emails = append(emails, e)
	}
	for _, e := range append(append([]string{"parity-a1@example.org", p.onList["bounces"][0], p.erased["acme"]}, p.groupUnsub...), p.onList["unsubscribes"][0]) {
		add("GET /v3/asm/suppressions/{email}", "acme", "/v3/asm/suppressions/"+url.PathEscape(e))
		emails = append(emails, e)
	}
	for g := 1; g <= 4; g++ {
		search, _ := json.Marshal(map[string]any{"recipient_emails": emails})
		rs = append(rs, parityRequest{route: "POST /v3/asm/groups/{group_id}/suppressions/search", acct: "acme",
			path: fmt.Sprintf("/v3/asm/groups/%d/suppressions/search", g), body: string(search)})
	}
	for _, m := range p.msgIDs {
		add("GET /v3/messages/{msg_id}", "acme", "/v3/messages/"+url.PathEscape(m))
	}
	check, _ := json.Marshal(map[string]any{"emails": emails})
	rs = append(rs, parityRequest{route: "POST /bouncer/v1/suppressions/check", acct: "acme", path: "/bouncer/v1/suppressions/check", body: string(check)})
	check, _ = json.Marshal(map[string]any{"emails": emails, "group_id": 2})
	rs = append(rs, parityRequest{route: "POST /bouncer/v1/suppressions/check", acct: "acme", path: "/bouncer/v1/suppressions/check", body: string(check)})
	// acme's webhook, through the ids of each side.
	add("GET /v3/user/webhooks/event/settings/{id}", "acme", "/v3/user/webhooks/event/settings/<hook>", "created_date", "updated_date")
	add("GET /v3/user/webhooks/event/settings/signed/{id}", "acme", "/v3/user/webhooks/event/settings/signed/<hook>", "public_key")
	add("GET /v3/user/webhooks/security/policies/{id}", "acme", "/v3/user/webhooks/security/policies/<policy>", "public_key", "created_at", "updated_at")
	add("GET /bouncer/v1/webhooks/{id}/secret", "acme", "/bouncer/v1/webhooks/<hook>/secret", "secret", "secrets")
	add("GET /bouncer/v1/webhooks/{id}/state", "acme", "/bouncer/v1/webhooks/<hook>/state", "last_success", "last_activity")
	add("GET /bouncer/v1/webhooks/{id}/failed", "acme", "/bouncer/v1/webhooks/<hook>/failed?since=0&limit=500")
	rs = append(rs, parityRequest{route: "GET /bouncer/v1/webhooks/{id}/deliveries", acct: "acme",
		path: "/bouncer/v1/webhooks/<hook>/deliveries?limit=500", deliveries: true})
	// The dashboard's own requests (web/src/app.js), with its session.
	add("GET /ui/session", "session", "/ui/session", "csrf_token", "expires_at", "key_id")
	for _, path := range []string{"/v3/stats?" + d + "&aggregated_by=day", "/v3/mailbox_providers/stats?" + d + "&aggregated_by=month",
		"/bouncer/v1/stats/top_domains?" + d + "&limit=10", "/v3/suppression/bounces/classifications?" + d,
		"/bouncer/v1/stats/bounce_reasons?" + d + "&limit=10", "/bouncer/v1/classify/unmatched?" + d + "&limit=10", "/v3/suppression/bounces?limit=50&offset=0",
		"/v3/user/webhooks/event/settings/all", "/bouncer/v1/webhooks/<hook>/state"} {
		route := "GET " + strings.SplitN(path, "?", 2)[0]
		route = strings.Replace(route, "<hook>", "{id}", 1)
		add(route, "session", path, "created_date", "updated_date", "last_success", "last_activity")
	}
	return rs
}

// compareAll asks every request of both sides and reports each answer
// that differs.
func compareAll(t *testing.T, sides [2]*paritySide, p *parityPicks, covered map[string]bool, when string) {
	t.Helper()
	t0 := time.Now()
	reqs := parityRequests(p)
	same := 0
	for _, rq := range reqs {
		var answers [2]any
		var codes [2]int
		var errs [2]error
		var wg sync.WaitGroup
		for i, s := range sides {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := strings.ReplaceAll(strings.ReplaceAll(rq.path, "<hook>", s.hook), "<policy>", s.policy)
				method := strings.SplitN(rq.route, " ", 2)[0]
				code, body, err := s.do(rq.acct, method, path, rq.body)
				codes[i], errs[i] = code, err
				for j := 0; j+1 < len(s.replace); j += 2 {
					body = bytes.ReplaceAll(body, []byte(s.replace[j]), []byte(s.replace[j+1]))
				}
				answers[i] = decodeAnswer(body, rq)
			}()
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("%s %s: %v %v", rq.route, rq.path, errs[0], errs[1])
		}
		covered[rq.route] = true
		if rq.deliveries {
			// The log, read in full, holds what the side's receiver got.
			// Delivery is at least once (a batch may go out twice), so
			// the sides are compared with their receivers, not each other.
			for i, s := range sides {
				want := map[string]any{"events delivered ok": s.recv.total(), "all rows": true}
				if !reflect.DeepEqual(answers[i], want) {
					t.Errorf("%s: %s on the %s side: %v, want %v (what its receiver got)", when, rq.path, s.name, answers[i], want)
				}
				answers[i] = "the receiver's events"
			}
		}
		if codes[0] != codes[1] || !reflect.DeepEqual(answers[0], answers[1]) {
			t.Errorf("%s: %s %s (%s) differs:\n  single  %d %s\n  cluster %d %s", when, rq.route, rq.path, rq.acct,
				codes[0], clip(answers[0]), codes[1], clip(answers[1]))
			continue
		}
		if codes[0] >= 500 {
			t.Errorf("%s: %s %s: %d on both: %s", when, rq.route, rq.path, codes[0], clip(answers[0]))
		}
		same++
	}
	t.Logf("%s: %d of %d answers the same on the single server and the cluster (%s)", when, same, len(reqs), time.Since(t0).Round(time.Second))
}

// decodeAnswer is the comparable form of a body: JSON with the masked keys
// replaced, list entries the API stamped without their created time; the
// delivery log as the events delivered ok; other bodies (CSV) as text.
func decodeAnswer(body []byte, rq parityRequest) any {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		// CSV: the created time of an entry the API stamped is its clock's.
		lines := strings.Split(string(body), "\n")
		for i, l := range lines {
			if f := strings.Split(l, ","); len(f) > 1 && apiStamped[f[0]] {
				f[1] = "<stamped>"
				lines[i] = strings.Join(f, ",")
			}
		}
		return strings.Join(lines, "\n")
	}
	mask := map[string]bool{}
	for _, k := range rq.mask {
		mask[k] = true
	}
	if rq.deliveries {
		var ds struct {
			Result []struct {
				Result string `json:"result"`
				Events int    `json:"events"`
			} `json:"result"`
		}
		json.Unmarshal(body, &ds)
		ok := 0
		for _, d := range ds.Result {
			if d.Result == "ok" {
				ok += d.Events
			}
		}
		return map[string]any{"events delivered ok": ok, "all rows": len(ds.Result) < 500}
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if e, ok := x["email"].(string); ok && apiStamped[e] {
				for _, k := range []string{"created", "created_at"} {
					if _, ok := x[k]; ok {
						x[k] = "<stamped>"
					}
				}
			}
			for k, vv := range x {
				if mask[k] {
					x[k] = "<masked>"
				} else {
					x[k] = walk(vv)
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	return walk(v)
}

func clip(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// compareCLI compares `bouncer summary` and `bouncer stats --json` of both
// sides, text for text.
func compareCLI(t *testing.T, sides [2]*paritySide) {
	t.Helper()
	now := time.Now().UTC()
	for _, args := range [][]string{
		{"summary"},
		{"stats", "--json", "--start", now.AddDate(0, 0, -5).Format(time.DateOnly), "--end", now.Format(time.DateOnly), "--account", "acme"},
		{"stats", "--json", "--start", now.AddDate(0, 0, -5).Format(time.DateOnly), "--end", now.Format(time.DateOnly), "--account", "globex"},
	} {
		a, b := sides[0].bin(t, args...), sides[1].bin(t, args...)
		if a != b {
			t.Errorf("bouncer %s differs:\n--- single\n%s\n--- cluster\n%s", strings.Join(args, " "), a, b)
		} else if args[0] == "summary" {
			t.Logf("bouncer summary, the same on both:\n%s", a)
		}
	}
}

// reclassifyBoth runs bouncer reclassify with rules that move Microsoft's
// RecipNotFound off bounces (mailbox_disabled, soft) and over-quota replies
// onto it (user_unknown, hard) on both sides, and checks that both report
// the same diff and list changes.
func reclassifyBoth(t *testing.T, sides [2]*paritySide) {
	t.Helper()
	rules := filepath.Join(t.TempDir(), "parity.rules")
	if err := os.WriteFile(rules, []byte("ops.resolver mailbox_disabled text: recipnotfound\nops.quota user_unknown text: is over quota\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	since, until := now.Add(-6*24*time.Hour).Format(time.DateOnly), now.Add(time.Hour).Format(time.RFC3339)
	var outs [2]string
	timing := regexp.MustCompile(` in [0-9.]+m?s\.$`)
	for i, s := range sides {
		out := s.bin(t, "reclassify", "--since", since, "--until", until, "--rules", rules, "--apply", "--wait", "1m")
		var keep []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "stored bounces") || strings.HasPrefix(line, "events whose") || strings.HasPrefix(line, "Applied:") ||
				regexp.MustCompile(`^[0-9]+\. `).MatchString(line) {
				keep = append(keep, timing.ReplaceAllString(line, ""))
			}
		}
		outs[i] = strings.Join(keep, "\n")
	}
	if outs[0] != outs[1] || !strings.Contains(outs[0], "ops.resolver") || !strings.Contains(outs[0], "ops.quota") {
		t.Errorf("bouncer reclassify: the sides differ, or a rule changed nothing:\nsingle:\n%s\ncluster:\n%s", outs[0], outs[1])
	}
	t.Logf("bouncer reclassify on both sides:\n%s", outs[0])
}
