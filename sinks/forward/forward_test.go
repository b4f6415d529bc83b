package forward

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/sinks/forward/smtptest"
)

// These tests drive Handle and Run directly against a real SMTP server
// (go-smtp on 127.0.0.1 with AUTH and TLS); the forwarding group on a real
// Kafka topic is tested in service_test.go (its shutdown) and in
// cmd/bouncer (worker_forward_test.go, the worker's flags and the API).

type staticSettings struct {
	mu   sync.Mutex
	list []accounts.ForwardBounce
	err  error
}

func (s *staticSettings) EnabledForwardBounces(ctx context.Context) ([]accounts.ForwardBounce, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]accounts.ForwardBounce(nil), s.list...), s.err
}

var classifier = enrich.MustNew()

const (
	hardReason = "550 5.1.1 The email account that you tried to reach does not exist"
	softReason = "552 5.2.2 The email account that you tried to reach is over quota"
)

func event(account, email, reason, extra string) []byte {
	return fmt.Appendf(nil, `{"event":"bounce","type":"bounce","email":%q,"timestamp":1764201600,"account_id":%q,`+
		`"reason":%q,"status":"5.1.1","sg_message_id":"msg-%s","smtp-id":"<smtp-%s@app.example>","sg_event_id":"ev-%s"%s}`,
		email, account, reason, email, email, email, extra)
}

func messages(values ...[]byte) []consumer.Message {
	out := make([]consumer.Message, len(values))
	for i, v := range values {
		out[i] = consumer.Message{Topic: "events", Partition: 0, Offset: int64(i), Value: v}
	}
	return out
}

func newForwarder(t *testing.T, srv *smtptest.Server, relay Relay, settings Settings, tune func(*Config)) *Forwarder {
	t.Helper()
	relay.Addr = srv.Addr
	relay.RootCAs = srv.CAPool
	cfg := Config{
		Relay: relay, From: "Bouncer <bounces@forwarder.example>", Settings: settings, Classifier: classifier,
		RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Metrics: NewMetrics(nil),
		MaxAge: 1 << 62, // the events are from 2025-11-27
	}
	if tune != nil {
		tune(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReportContentAuthAndTLS(t *testing.T) {
	for _, tc := range []struct{ tls, auth string }{
		{"starttls", "plain"}, {"starttls", "login"}, {"tls", "cram-md5"}, {"tls", "plain"}, {"none", "cram-md5"},
	} {
		t.Run(tc.tls+"/"+tc.auth, func(t *testing.T) {
			srv := smtptest.Start(t, smtptest.Options{Username: "relay-user", Password: "s3cret", TLS: tc.tls})
			settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
			f := newForwarder(t, srv, Relay{Username: "relay-user", Password: "s3cret", Auth: tc.auth, TLS: tc.tls}, settings, nil)
			if err := f.Handle(context.Background(), "events", 0, messages(event("acme", "Kim@Example.org", hardReason, ""))); err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if len(m.To) != 1 || m.To[0] != "ops@acme.example" || m.From != "bounces@forwarder.example" {
				t.Errorf("envelope from %q to %v", m.From, m.To)
			}
			for _, want := range []string{
				"Recipient:      Kim@Example.org", "Reason:         " + hardReason, "Status:         5.1.1",
				"Classification: Invalid Address (hard,", "Event time:     2025-11-27T00:00:00Z",
				"Message ID:     msg-Kim@Example.org", "SMTP ID:        <smtp-Kim@Example.org@app.example>",
			} {
				if !strings.Contains(m.Body, want) {
					t.Errorf("body lacks %q:\n%s", want, m.Body)
				}
			}
			if got := m.Header.Get("Subject"); got != "Bounce: Kim@Example.org (Invalid Address)" {
				t.Errorf("subject %q", got)
			}
			if id := m.Header.Get("Message-Id"); !strings.HasPrefix(id, "<"+MessageIDPrefix) || !strings.HasSuffix(id, "@forwarder.example>") {
				t.Errorf("Message-ID %q, want <%s...@forwarder.example>", id, MessageIDPrefix)
			}
			if m.Header.Get(HeaderForwarded) != "report" || m.Header.Get("Auto-Submitted") != "auto-generated" {
				t.Errorf("marks: %s=%q Auto-Submitted=%q", HeaderForwarded, m.Header.Get(HeaderForwarded), m.Header.Get("Auto-Submitted"))
			}
		})
	}
}

// A wrong password is the configuration's fault, not the message's: it is
// retried (until GiveUpAfter), never dropped at once like a 5xx to RCPT.
func TestAuthFailureIsRetried(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "right"})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{Username: "u", Password: "wrong"}, settings, func(c *Config) { c.GiveUpAfter = 400 * time.Millisecond })
	if err := f.Handle(context.Background(), "events", 0, messages(event("acme", "a@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages with a wrong password", n)
	}
	if r, g := counter(t, f.m.retries), counter(t, f.m.emails.WithLabelValues("report", "gave_up")); r < 1 || g != 1 {
		t.Errorf("retries %v, gave_up %v; want retries, then one given up (535 at AUTH is retried)", r, g)
	}
}

func TestOnlyHardBouncesOfEnabledAccounts(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, nil)
	batch := messages(
		event("globex", "other@x.org", hardReason, ""), // no forwarding for globex
		event("acme", "full@x.org", softReason, ""),    // soft
		[]byte(`{"event":"bounce","type":"blocked","email":"blocked@x.org","timestamp":1764201600,"account_id":"acme","reason":"550 5.7.1 blocked by spamhaus"}`),
		[]byte(`{"event":"deferred","email":"later@x.org","timestamp":1764201600,"account_id":"acme","response":"421 try later"}`),
		[]byte(`{"event":"delivered","email":"ok@x.org","timestamp":1764201600,"account_id":"acme"}`),
		[]byte(`not json`),
		event("acme", "ops@acme.example", hardReason, ""), // the forwarding address itself
		event("acme", "fwd1@x.org", hardReason, "")[:0],   // empty message
		[]byte(strings.Replace(string(event("acme", "fwd2@x.org", hardReason, "")), `"<smtp-fwd2@x.org@app.example>"`, `"<bouncer-fwd.0a1b@forwarder.example>"`, 1)),
		event("acme", "fwd3@x.org", hardReason, `,"bouncer_forwarded":"1"`), // SendGrid custom arg
		event("acme", "hard@x.org", hardReason, ""),
	)
	if err := f.Handle(context.Background(), "events", 0, batch); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !strings.Contains(msgs[0].Body, "hard@x.org") {
		var bodies []string
		for _, m := range msgs {
			bodies = append(bodies, m.Header.Get("Subject"))
		}
		t.Fatalf("forwarded %v, want only hard@x.org's report", bodies)
	}
	for outcome, want := range map[string]float64{OutcomeSoft: 1, OutcomeBlock: 1, OutcomeLoop: 3, OutcomeForwarded: 1} {
		if got := counter(t, f.m.bounces.WithLabelValues(outcome)); got != want {
			t.Errorf("outcome %s: %v, want %v", outcome, got, want)
		}
	}

	// A bounce older than MaxAge is not forwarded.
	srv3 := smtptest.Start(t, smtptest.Options{})
	f3 := newForwarder(t, srv3, Relay{}, settings, func(c *Config) { c.MaxAge = time.Hour })
	if err := f3.Handle(context.Background(), "events", 0, messages(event("acme", "old@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv3.Messages()); n != 0 || counter(t, f3.m.bounces.WithLabelValues(OutcomeStale)) != 1 {
		t.Errorf("a year-old bounce: %d messages, want none (stale)", n)
	}

	// With blocks forwarded, the block is.
	srv2 := smtptest.Start(t, smtptest.Options{})
	f2 := newForwarder(t, srv2, Relay{}, settings, func(c *Config) { c.ForwardBlocks = true })
	if err := f2.Handle(context.Background(), "events", 0, batch[2:3]); err != nil {
		t.Fatal(err)
	}
	if msgs := srv2.Messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Body, "Type:           blocked") {
		t.Errorf("ForwardBlocks: %d messages", len(msgs))
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Username: "u", Password: "p"})
	srv.FailNext(3)
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{Username: "u", Password: "p"}, settings, nil)
	if err := f.Handle(context.Background(), "events", 0, messages(event("acme", "a@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d messages after three 451s, want 1", n)
	}
	if a := srv.Attempts(); a != 4 {
		t.Errorf("%d attempts, want 4", a)
	}
	if got := counter(t, f.m.retries); got != 3 {
		t.Errorf("retries %v, want 3", got)
	}

	// A 5xx for the address is permanent: one attempt, counted, the batch
	// goes on.
	srv.Reject("ops@acme.example")
	before := srv.Attempts()
	if err := f.Handle(context.Background(), "events", 0, messages(nil, event("acme", "b@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, f.m.emails.WithLabelValues("report", "rejected")); got != 1 || srv.Attempts() != before {
		t.Errorf("rejected %v, DATA attempts %d -> %d; want 1 and no DATA", got, before, srv.Attempts())
	}
}

func TestGiveUpAndResumeAfterCancel(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	srv.FailNext(1000)
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, func(c *Config) { c.GiveUpAfter = 500 * time.Millisecond })
	batch := messages(event("acme", "a@x.org", hardReason, ""), event("acme", "b@x.org", hardReason, ""))

	// A Handle whose context ends while retrying returns its error; the
	// next call resumes with the same report (same Message-ID, one token).
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := f.Handle(ctx, "events", 0, batch); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Handle with an expiring context: %v", err)
	}
	srv.FailNext(0)
	if err := f.Handle(context.Background(), "events", 0, batch); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || !strings.Contains(msgs[0].Body, "a@x.org") || !strings.Contains(msgs[1].Body, "b@x.org") {
		t.Fatalf("after resuming: %d messages, want a's then b's report", len(msgs))
	}

	// Failing for longer than GiveUpAfter: given up, counted, batch done.
	srv.FailNext(1000)
	if err := f.Handle(context.Background(), "events", 0, messages(nil, nil, event("acme", "c@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, f.m.emails.WithLabelValues("report", "gave_up")); got != 1 {
		t.Errorf("gave_up %v, want 1", got)
	}
}

func TestStopRetryingEndsHandle(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	srv.FailNext(1000)
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, nil)
	go func() {
		for srv.Attempts() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		f.StopRetrying()
	}()
	err := f.Handle(context.Background(), "events", 0, messages(event("acme", "a@x.org", hardReason, "")))
	if !errors.Is(err, errStopping) {
		t.Fatalf("Handle while stopping: %v, want errStopping (the batch is not committed)", err)
	}
}

func TestRateCapSendsDigest(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}, {AccountID: "globex", Enabled: true, Email: "ops@globex.example"}}}
	// The window ends when the test's clock says so: at the start of one
	// (2025-11-27 00:00:00), then a window later.
	clock := clockwork.NewFakeClockAt(time.Unix(1764201600, 0))
	f := newForwarder(t, srv, Relay{}, settings, func(c *Config) {
		c.RateLimit, c.RateWindow, c.DigestMax, c.Clock = 2, time.Minute, 2, clock
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	if err := clock.BlockUntilContext(ctx, 2); err != nil { // Run's digest and settings tickers
		t.Fatal(err)
	}

	var batch [][]byte
	for i := range 5 {
		batch = append(batch, event("acme", fmt.Sprintf("r%d@x.org", i), hardReason, ""))
	}
	batch = append(batch, event("globex", "g@x.org", hardReason, ""))
	if err := f.Handle(context.Background(), "events", 0, messages(batch...)); err != nil {
		t.Fatal(err)
	}
	// 2 reports for acme, 1 for globex, then acme's digest of 3 (2 listed,
	// 1 counted) at the end of the window, and not before.
	if msgs := srv.Messages(); len(msgs) != 3 {
		t.Fatalf("%d messages before the window ended, want the 3 reports", len(msgs))
	}
	clock.Advance(time.Minute)
	msgs, ok := srv.WaitFor(10*time.Second, func(ms []Message) bool { return len(ms) >= 4 })
	if !ok {
		t.Fatalf("%d messages, want 4", len(msgs))
	}
	var digests []smtptest.Message
	for _, m := range msgs {
		if m.Header.Get(HeaderForwarded) == "digest" {
			digests = append(digests, m)
		}
	}
	if len(digests) != 1 {
		t.Fatalf("%d digests, want 1", len(digests))
	}
	d := digests[0]
	if d.To[0] != "ops@acme.example" || d.Header.Get("Subject") != "Bounce digest: 3 bounces of account acme" {
		t.Errorf("digest to %v subject %q", d.To, d.Header.Get("Subject"))
	}
	for _, want := range []string{"r2@x.org", "r3@x.org", "and 1 more bounces not listed"} {
		if !strings.Contains(d.Body, want) {
			t.Errorf("digest lacks %q:\n%s", want, d.Body)
		}
	}
	if strings.Contains(d.Body, "r0@x.org") || strings.Contains(d.Body, "r1@x.org") {
		t.Errorf("digest lists bounces already reported:\n%s", d.Body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(srv.Messages()) != 4 {
		t.Errorf("%d messages after stopping, want 4", len(srv.Messages()))
	}
}

func TestStopSendsPendingDigests(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, func(c *Config) { c.RateLimit, c.RateWindow = 1, time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	if err := f.Handle(context.Background(), "events", 0, messages(event("acme", "a@x.org", hardReason, ""), event("acme", "b@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || msgs[1].Header.Get(HeaderForwarded) != "digest" || !strings.Contains(msgs[1].Body, "b@x.org") {
		t.Fatalf("after stopping: %d messages, want a's report and a digest with b", len(msgs))
	}
}

func TestDigestFollowsTheNewestSetting(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}, {AccountID: "globex", Enabled: true, Email: "ops@globex.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, func(c *Config) { c.RateLimit, c.RateWindow = 1, time.Hour })
	batch := messages(event("acme", "a1@x.org", hardReason, ""), event("acme", "a2@x.org", hardReason, ""),
		event("globex", "g1@x.org", hardReason, ""), event("globex", "g2@x.org", hardReason, ""))
	if err := f.Handle(context.Background(), "events", 0, batch); err != nil {
		t.Fatal(err)
	}
	// acme moves its address, globex turns forwarding off.
	settings.mu.Lock()
	settings.list = []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "new@acme.example"}}
	settings.mu.Unlock()
	if err := f.loadSettings(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.flush(context.Background(), nil, time.Time{})
	msgs := srv.Messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want two reports and acme's digest: %v", len(msgs), msgs)
	}
	if d := msgs[2]; d.To[0] != "new@acme.example" || !strings.Contains(d.Body, "a2@x.org") {
		t.Errorf("digest to %v, want the new address", d.To)
	}
}

func TestSettingsAreRefreshed(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{}
	f := newForwarder(t, srv, Relay{}, settings, func(c *Config) { c.RefreshEvery = 50 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	if err := f.Handle(context.Background(), "events", 0, messages(event("acme", "a@x.org", hardReason, ""))); err != nil {
		t.Fatal(err)
	}
	settings.mu.Lock()
	settings.list = []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}
	settings.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		got := f.settings["acme"]
		f.mu.Unlock()
		if got == "ops@acme.example" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("settings change not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	batch := messages(event("acme", "a@x.org", hardReason, ""), event("acme", "b@x.org", hardReason, ""))
	if err := f.Handle(context.Background(), "events", 0, batch); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Body, "b@x.org") {
		t.Fatalf("%d messages, want only b's (a's offset was handled before forwarding was enabled)", len(msgs))
	}

	// Before the first successful read, Handle fails (the consumer retries).
	bad := newForwarder(t, srv, Relay{}, &staticSettings{err: errors.New("clickhouse down")}, nil)
	if err := bad.Handle(context.Background(), "events", 0, batch); err == nil {
		t.Error("Handle without settings returned nil")
	}
}

type Message = smtptest.Message

func TestConfigErrors(t *testing.T) {
	ok := func() Config {
		return Config{Relay: Relay{Addr: "smtp.example.com:587"}, From: "b@example.com", Settings: &staticSettings{}, Classifier: classifier}
	}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no relay":          {func(c *Config) { c.Relay.Addr = "" }, "host:port"},
		"bad port":          {func(c *Config) { c.Relay.Addr = "h:99999" }, "port"},
		"bad tls":           {func(c *Config) { c.Relay.TLS = "ssl" }, "none, starttls or tls"},
		"bad auth":          {func(c *Config) { c.Relay.Auth = "xoauth"; c.Relay.Username = "u" }, "plain, login or cram-md5"},
		"auth without TLS":  {func(c *Config) { c.Relay.Username = "u"; c.Relay.TLS = "none" }, "clear text"},
		"auth without user": {func(c *Config) { c.Relay.Auth = "login" }, "user name"},
		"bad from":          {func(c *Config) { c.From = "not an address" }, "from address"},
		"no settings":       {func(c *Config) { c.Settings = nil }, "Settings"},
	} {
		t.Run(name, func(t *testing.T) {
			c := ok()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want an error about %q", err, tc.want)
			}
		})
	}
	c := ok()
	if err := c.Validate(); err != nil || c.Relay.TLS != "starttls" || c.Relay.Auth != "none" || c.RateLimit != 10 || c.RateWindow != time.Minute {
		t.Errorf("defaults: %v %+v", err, c)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]struct {
		n int
		w time.Duration
	}{"10": {10, time.Minute}, "10/m": {10, time.Minute}, "5/30s": {5, 30 * time.Second}, "100/1h": {100, time.Hour}} {
		n, w, err := ParseRate(in)
		if err != nil || n != want.n || w != want.w {
			t.Errorf("ParseRate(%q) = %d, %s, %v", in, n, w, err)
		}
	}
	for _, bad := range []string{"", "0", "-1", "x/m", "10/x", "10/10ms"} {
		if _, _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

// BenchmarkReport measures one report end to end: decode, classify, build
// the message, and hand it to a local relay over a new STARTTLS
// connection with AUTH PLAIN.
func BenchmarkReport(b *testing.B) {
	srv := smtptest.Start(b, smtptest.Options{Username: "u", Password: "p"})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	relay := Relay{Addr: srv.Addr, RootCAs: srv.CAPool, Username: "u", Password: "p"}
	f, err := New(Config{Relay: relay, From: "b@forwarder.example", Settings: settings, Classifier: classifier,
		RateLimit: 1 << 30, MaxAge: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	msg := []consumer.Message{{Topic: "events", Value: event("acme", "a@x.org", hardReason, "")}}
	b.ResetTimer()
	for i := range b.N {
		msg[0].Offset = int64(i)
		if err := f.Handle(context.Background(), "events", 0, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := len(srv.Messages()); n != b.N {
		b.Fatalf("%d messages for %d reports", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}

func TestEscapedBounceIsForwarded(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, nil)
	escaped := []byte(`{"event":"bounc\u0065","email":"esc@x.org","timestamp":1764201600,"account_id":"acme","reason":"` + hardReason + `"}`)
	if err := f.Handle(context.Background(), "events", 0, messages(escaped)); err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || !strings.Contains(msgs[0].Body, "esc@x.org") {
		t.Fatalf("%d messages: an event spelled with an escape must pass the prefilter", len(msgs))
	}
}

// BenchmarkHandleNoBounces measures the forwarder's cost per message on
// traffic without bounces (what it adds beside the sink).
func BenchmarkHandleNoBounces(b *testing.B) {
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f, err := New(Config{Relay: Relay{Addr: "127.0.0.1:9"}, From: "b@forwarder.example", Settings: settings, Classifier: classifier})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]consumer.Message, 1000)
	for i := range batch {
		batch[i] = consumer.Message{Topic: "events", Offset: int64(i), Value: fmt.Appendf(nil,
			`{"event":"delivered","email":"r%d@example.org","timestamp":1764201600,"account_id":"acme","sg_message_id":"m%d","response":"250 OK"}`, i, i)}
	}
	b.ResetTimer()
	for i := range b.N {
		for j := range batch {
			batch[j].Offset = int64(i*len(batch) + j)
		}
		if err := f.Handle(context.Background(), "events", 0, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "msgs/s")
}

// CR and LF in status and reason (text from a remote mail server) cannot
// add lines to a forwarded report: each field stays on its own line.
func TestReportLinesCannotBeForged(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"}}}
	f := newForwarder(t, srv, Relay{}, settings, nil)
	reason := hardReason + "\r\nClassification: Reputation (soft, forged)\nEvent ID:       forged\u2028Recipient:      ceo@acme.example"
	msg := fmt.Appendf(nil, `{"event":"bounce","email":" kim@x.org\r\n","timestamp":1764201600,"account_id":"acme","reason":%q,"status":%q}`,
		reason, "5.1.1\r\nRecipient:      ceo@acme.example\r\n")
	if err := f.Handle(context.Background(), "events", 0, messages(msg)); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	body := strings.ReplaceAll(msgs[0].Body, "\r\n", "\n")
	count := map[string]int{}
	for _, l := range strings.Split(body, "\n") {
		if k, _, ok := strings.Cut(l, ":"); ok {
			count[k]++
		}
		if strings.HasPrefix(l, "Event ID:") && strings.Contains(l, "forged") || strings.HasPrefix(l, "Recipient:") && strings.Contains(l, "ceo@") {
			t.Errorf("forged line %q", l)
		}
	}
	for _, k := range []string{"Recipient", "Reason", "Status", "Classification", "Event ID"} {
		if count[k] != 1 {
			t.Errorf("%d lines %q, want 1:\n%s", count[k], k+":", body)
		}
	}
	if !strings.Contains(body, "Reason:         "+hardReason+" Classification: Reputation (soft, forged) Event ID: forged Recipient: ceo@acme.example\n") {
		t.Errorf("the reason is not kept on one line:\n%s", body)
	}
}
