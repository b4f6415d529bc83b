package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/oauthtest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
)

// oauthReceiver is an endpoint behind an authorization server's bearer
// check: it records the events of authorized requests and counts the
// refused ones.
type oauthReceiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	events  map[string]int // sg_event_id -> times received
	tokens  []string       // the bearer token of each authorized request
	refused int
}

func startOAuthReceiver(t *testing.T, as *oauthtest.Server) *oauthReceiver {
	t.Helper()
	rc := &oauthReceiver{events: map[string]int{}}
	ok := as.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var evs []struct {
			ID string `json:"sg_event_id"`
		}
		if err := json.Unmarshal(body, &evs); err != nil {
			w.WriteHeader(400)
			return
		}
		rc.mu.Lock()
		for _, e := range evs {
			rc.events[e.ID]++
		}
		rc.tokens = append(rc.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		rc.mu.Unlock()
		w.WriteHeader(200)
	}))
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !as.Authorized(r) {
			rc.mu.Lock()
			rc.refused++
			rc.mu.Unlock()
		}
		ok.ServeHTTP(w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *oauthReceiver) snapshot() (events map[string]int, tokens []string, refused int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	events = map[string]int{}
	for k, v := range rc.events {
		events[k] = v
	}
	return events, slices.Clone(rc.tokens), rc.refused
}

// guardFor is the SSRF guard with only the given test servers' ports
// open, as an operator's allow-list would have them.
func guardFor(srvs ...*httptest.Server) safedial.Guard {
	var g safedial.Guard
	for _, s := range srvs {
		g.Allow = append(g.Allow, safedial.RuleFor(netip.MustParseAddrPort(s.Listener.Addr().String())))
	}
	return g
}

func oneEvent(id string) []json.RawMessage {
	return []json.RawMessage{json.RawMessage(`{"event":"delivered","email":"a@example.com","timestamp":1764201600,"sg_event_id":"` + id + `"}`)}
}

// TestOAuthTokenCachedRefreshedAndScoped runs deliveries against a real
// authorization server (go-oauth2) whose receiver accepts only its tokens:
// one token serves many batches; a token the receiver refuses (revoked) is
// fetched again once and the batch delivered in the same attempt; scopes
// are asked for; a token URL the SSRF guard does not allow is never
// dialled (the batch is parked for retry, the log says "blocked").
func TestOAuthTokenCachedRefreshedAndScoped(t *testing.T) {
	as := oauthtest.Start(t, "bouncer-client", "right-secret", time.Hour)
	rc := startOAuthReceiver(t, as)
	oauth := &subscription.OAuth{ClientID: "bouncer-client", ClientSecret: "right-secret", TokenURL: as.TokenURL, Scopes: []string{"events:write", "events:read"}}
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: rc.srv.URL + "/hook", Enabled: true,
		Events: map[string]bool{"delivered": true}, OAuth: oauth}}}
	parker := &memParker{}
	log := &memRecords{}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: guardFor(rc.srv, as.HTTP).Client(5 * time.Second), Parker: parker,
		Log: log, RefreshEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	send := func(id string) {
		t.Helper()
		if err := d.Redeliver(ctx, []*webhook.Batch{{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acct", Events: oneEvent(id)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		send(fmt.Sprintf("cached-%d", i))
	}
	events, tokens, refused := rc.snapshot()
	if len(events) != 3 || len(tokens) != 3 || refused != 0 {
		t.Fatalf("after 3 batches: events %v, %d authorized requests, %d refused", events, len(tokens), refused)
	}
	if as.Issued() != 1 || tokens[0] != tokens[1] || tokens[1] != tokens[2] {
		t.Errorf("3 batches took %d tokens (%v), want one cached token", as.Issued(), tokens)
	}
	if got := as.Scopes(); len(got) != 1 || got[0] != "events:write events:read" {
		t.Errorf("token requests asked for scopes %q, want one request with %q", got, "events:write events:read")
	}

	// The receiver stops accepting the token: one 401, a new token, and
	// the batch is delivered within the same attempt.
	if err := as.Revoke(tokens[0]); err != nil {
		t.Fatal(err)
	}
	send("after-revoke")
	events, tokens, refused = rc.snapshot()
	if events["after-revoke"] != 1 || refused != 1 || as.Issued() != 2 || tokens[len(tokens)-1] == tokens[0] {
		t.Errorf("after a revoked token: delivered %d, refused %d, issued %d; want 1, 1, 2 (a new token)", events["after-revoke"], refused, as.Issued())
	}
	if p := parker.count(); p != 0 {
		t.Errorf("%d batches parked, want none (each 401 is retried once with a new token)", p)
	}

	// A token URL the allow-list does not open: blocked, never dialled;
	// the batch waits in the retry tiers.
	blockedAS := oauthtest.Start(t, "bouncer-client", "right-secret", time.Hour)
	reg.mu.Lock()
	reg.eps[0].OAuth = &subscription.OAuth{ClientID: "bouncer-client", ClientSecret: "right-secret", TokenURL: blockedAS.TokenURL}
	reg.mu.Unlock()
	time.Sleep(200 * time.Millisecond) // RefreshEvery: the dispatcher sees the change
	send("blocked-token-url")
	if blockedAS.Issued()+blockedAS.Refused() != 0 {
		t.Errorf("the token URL outside the allow-list was reached")
	}
	if p := parker.count(); p != 1 {
		t.Errorf("%d batches parked for retry, want 1", p)
	}
	if r := log.last(); r.Result != webhook.ResultOAuth || !strings.Contains(r.Response, "blocked") || strings.Contains(r.Response, "127.0.0.1") {
		t.Errorf("log row %+v: want result oauth, a blocked class and no address", r)
	}
}

// TestOAuthTokenExpiry: a token is used until TokenEarly before it
// expires, then a new one is fetched before sending (no 401 needed).
func TestOAuthTokenExpiry(t *testing.T) {
	as := oauthtest.Start(t, "c", "s", 2*time.Second)
	rc := startOAuthReceiver(t, as)
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: rc.srv.URL + "/", Enabled: true,
		Events: map[string]bool{"delivered": true}, OAuth: &subscription.OAuth{ClientID: "c", ClientSecret: "s", TokenURL: as.TokenURL}}}}
	d, err := webhook.New(webhook.Config{Registry: reg, Client: guardFor(rc.srv, as.HTTP).Client(5 * time.Second), Parker: &memParker{},
		TokenEarly: time.Second, RefreshEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go d.Run(ctx)
	for !d.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	send := func(id string) {
		if err := d.Redeliver(ctx, []*webhook.Batch{{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acct", Events: oneEvent(id)}}); err != nil {
			t.Fatal(err)
		}
	}
	send("first")
	time.Sleep(2500 * time.Millisecond) // past the first token's expiry
	send("second")
	events, tokens, refused := rc.snapshot()
	if events["first"] != 1 || events["second"] != 1 || refused != 0 {
		t.Fatalf("events %v, refused %d: want both delivered without a 401", events, refused)
	}
	if as.Issued() != 2 || tokens[0] == tokens[1] {
		t.Errorf("issued %d tokens, want 2: the expired token is replaced before it is sent", as.Issued())
	}
}

// TestOAuthTokenEndpointDownAndWrongCredentials runs the webhook group
// with its Kafka retry tiers: while the token endpoint is down no batch is
// sent and none is lost (they wait in the tiers); with wrong credentials
// the log says so in words the account may read; once the credentials are
// fixed and the endpoint is up, every event arrives.
func TestOAuthTokenEndpointDownAndWrongCredentials(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	as := oauthtest.Start(t, "bouncer-client", "right-secret", time.Hour)
	as.SetDown(true)
	rc := startOAuthReceiver(t, as)
	reg := &memRegistry{eps: []subscription.Webhook{{ID: "ep", AccountID: "acct", URL: rc.srv.URL + "/hook", Enabled: true,
		Events: map[string]bool{"delivered": true},
		OAuth:  &subscription.OAuth{ClientID: "bouncer-client", ClientSecret: "wrong-secret", TokenURL: as.TokenURL}}}}
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{300 * time.Millisecond, 500 * time.Millisecond, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second}}
	deleteTopics(t, brokers, topics.All())
	failed := &memFailed{}
	log := &memRecords{}
	defer runDelivery(t, ctx, kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Topics: topics, DeliveryLog: log, Failed: failed,
		Dispatcher: webhook.Config{Registry: reg, Client: guardFor(rc.srv, as.HTTP).Client(5 * time.Second),
			Schedule: webhook.Schedule{Delays: topics.Delays}, MaxBatchWait: 50 * time.Millisecond, AttemptTimeout: 2 * time.Second,
			BreakerFailures: 1000, RefreshEvery: 100 * time.Millisecond},
	})()

	w, err := consumer.NewWriter(consumer.Conn{Brokers: conn.Brokers}, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const n = 20
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Value: fmt.Appendf(nil, `{"email":"a%d@example.com","timestamp":1764201600,"event":"delivered","sg_event_id":"o%d","account_id":"acct"}`, i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Down: attempts fail on the token, the receiver sees nothing.
	waitFor("token failures while the endpoint is down", func() bool { return log.count(webhook.ResultOAuth, "HTTP 503") >= 2 })
	if events, _, refused := rc.snapshot(); len(events) != 0 || refused != 0 {
		t.Fatalf("the receiver got requests without a token: %d events, %d refused", len(events), refused)
	}
	// Up, but the secret is wrong: the log names the credentials.
	as.SetDown(false)
	waitFor("a wrong-credentials failure", func() bool {
		return log.count(webhook.ResultOAuth, "check oauth_client_id and oauth_client_secret") >= 1
	})
	if as.Issued() != 0 {
		t.Fatalf("issued %d tokens for a wrong secret", as.Issued())
	}
	r := log.find(webhook.ResultOAuth, "check oauth_client_id")
	if !strings.Contains(r.Response, "HTTP 401 Unauthorized (invalid_client)") || strings.Contains(r.Response, "127.0.0.1") {
		t.Errorf("wrong credentials logged %q: want the status and the RFC 6749 code, no address", r.Response)
	}
	// Fixed: every event arrives, none lost, none given up.
	reg.mu.Lock()
	reg.eps[0].OAuth = &subscription.OAuth{ClientID: "bouncer-client", ClientSecret: "right-secret", TokenURL: as.TokenURL}
	reg.mu.Unlock()
	waitFor("every event delivered", func() bool { events, _, _ := rc.snapshot(); return len(events) == n })
	if gave := failed.forEndpoint("ep"); len(gave) != 0 {
		t.Errorf("%d batches given up", len(gave))
	}
	if _, _, refused := rc.snapshot(); refused != 0 {
		t.Errorf("%d requests reached the receiver without a valid token", refused)
	}
}

// memRecords keeps delivery log rows.
type memRecords struct {
	mu   sync.Mutex
	rows []subscription.Delivery
}

func (m *memRecords) Record(r subscription.Delivery) {
	m.mu.Lock()
	m.rows = append(m.rows, r)
	m.mu.Unlock()
}

// WriteDeliveries keeps the rows a LogWriter writes.
func (m *memRecords) WriteDeliveries(_ context.Context, rows []subscription.Delivery) error {
	m.mu.Lock()
	m.rows = append(m.rows, rows...)
	m.mu.Unlock()
	return nil
}

func (m *memRecords) last() subscription.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.rows) - 1; i >= 0; i-- {
		if m.rows[i].Result != webhook.ResultParked {
			return m.rows[i]
		}
	}
	return subscription.Delivery{}
}

func (m *memRecords) find(result, text string) subscription.Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.rows {
		if r.Result == result && strings.Contains(r.Response, text) {
			return r
		}
	}
	return subscription.Delivery{}
}

func (m *memRecords) count(result, text string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.rows {
		if r.Result == result && strings.Contains(r.Response, text) {
			n++
		}
	}
	return n
}

func (p *memParker) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.retry)
}
