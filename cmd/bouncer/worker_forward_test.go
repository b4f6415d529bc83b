package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/ops"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/forward"
	"github.com/bouncer-mail/bouncer/sinks/forward/smtptest"
)

// parseForwardFlags parses args into forward flags, with env as the
// environment.
func parseForwardFlags(t *testing.T, env map[string]string, args ...string) *forwardFlags {
	t.Helper()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e := &envFlags{fs: fs, getenv: envFunc(env)}
	ff := addForwardFlags(e)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := e.err(); err != nil {
		t.Fatal(err)
	}
	return ff
}

func TestForwardFlagsEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"nothing set", nil, nil, false},
		{"a relay turns it on", map[string]string{"BOUNCER_SMTP_RELAY": "smtp.example.com:587"}, nil, true},
		{"--forward=false wins over a relay", nil, []string{"--smtp-relay", "smtp.example.com:587", "--forward=false"}, false},
		{"BOUNCER_FORWARD=false wins over a relay", map[string]string{"BOUNCER_FORWARD": "false"}, []string{"--smtp-relay", "h:25"}, false},
		{"--forward without relay", nil, []string{"--forward"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseForwardFlags(t, tc.env, tc.args...).enabled(); got != tc.want {
				t.Errorf("enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestForwardStartRejectsBadFlags(t *testing.T) {
	st := &clickhouse.Store{}
	cl := enrich.MustNew()
	conn := consumer.Conn{Brokers: []string{"127.0.0.1:9"}}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no relay", []string{"--forward", "--forward-from", "b@example.com"}, "--smtp-relay"},
		{"no sender", []string{"--smtp-relay", "h:587"}, "--forward-from"},
		{"bad relay", []string{"--smtp-relay", "nohostport", "--forward-from", "b@example.com"}, "host:port"},
		{"bad TLS mode", []string{"--smtp-relay", "h:587", "--forward-from", "b@example.com", "--smtp-tls", "ssl"}, "none, starttls or tls"},
		{"password in clear", []string{"--smtp-relay", "h:25", "--forward-from", "b@example.com", "--smtp-tls", "none", "--smtp-user", "u"}, "clear text"},
		{"bad auth", []string{"--smtp-relay", "h:587", "--forward-from", "b@example.com", "--smtp-user", "u", "--smtp-auth", "ntlm"}, "plain, login or cram-md5"},
		{"bad rate", []string{"--smtp-relay", "h:587", "--forward-from", "b@example.com", "--forward-rate", "ten"}, "--forward-rate"},
		{"missing CA file", []string{"--smtp-relay", "h:587", "--forward-from", "b@example.com", "--smtp-ca-file", "/nonexistent/ca.pem"}, "--smtp-ca-file"},
		{"bad sender", []string{"--smtp-relay", "h:587", "--forward-from", "not an address"}, "from address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ff := parseForwardFlags(t, nil, tc.args...)
			wait, err := ff.start(context.Background(), conn, "events", st, cl, prometheus.NewRegistry(), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				if wait != nil {
					t.Cleanup(func() { wait() })
				}
				t.Fatalf("start: %v, want an error about %q", err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2 (usage)", exitCode(err))
			}
		})
	}
	// Off: nothing runs, wait returns at once.
	wait, err := parseForwardFlags(t, nil).start(context.Background(), conn, "events", st, cl, nil, nil, nil)
	if err != nil || wait() != nil {
		t.Errorf("forwarding off: %v", err)
	}
}

// TestForwardWorker runs the forwarding group (start) on a real Kafka topic
// with settings in a real ClickHouse, written through the real API, and a
// real SMTP relay with AUTH and STARTTLS on a self-signed certificate.
func TestForwardWorker(t *testing.T) {
	brokers := testenv.Kafka(t)
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	topic := testenv.Topic(t, brokers, 1)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db}
	ctx := context.Background()
	if _, err := clickhouse.Migrate(ctx, clickhouse.Config{Addr: []string{addr}, Database: db}); err != nil {
		t.Fatal(err)
	}
	st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	// Settings through the API: acme and burst forward, globex does not.
	srv := httptest.NewServer(api.NewServer(api.Config{Store: newAPIStore(st, nil), Keys: st, Forwarding: st, RateLimit: 1000}))
	t.Cleanup(srv.Close)
	patch := func(key, body string) string {
		t.Helper()
		req, _ := http.NewRequest("PATCH", srv.URL+"/v3/mail_settings/forward_bounce", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("PATCH %s: %d %s", body, resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	get := func(key string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/v3/mail_settings/forward_bounce", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	acmeKey, globexKey, burstKey := createKey(t, env, "acme"), createKey(t, env, "globex"), createKey(t, env, "burst")
	// acme uses SendGrid's own Go library, as a SendGrid user would.
	req := sendgrid.GetRequest(acmeKey, "/v3/mail_settings/forward_bounce", srv.URL)
	req.Method = rest.Patch
	req.Body = []byte(`{"enabled":true,"email":"ops@acme.example"}`)
	if resp, err := sendgrid.API(req); err != nil || resp.StatusCode != 200 || strings.TrimSpace(resp.Body) != `{"enabled":true,"email":"ops@acme.example"}` {
		t.Fatalf("sendgrid-go PATCH: %v %+v", err, resp)
	}
	req = sendgrid.GetRequest(acmeKey, "/v3/mail_settings/forward_bounce", srv.URL)
	if resp, err := sendgrid.API(req); err != nil || resp.StatusCode != 200 || strings.TrimSpace(resp.Body) != `{"enabled":true,"email":"ops@acme.example"}` {
		t.Fatalf("sendgrid-go GET: %v %+v", err, resp)
	}
	patch(burstKey, `{"enabled":true,"email":"alerts@burst.example"}`)
	patch(globexKey, `{"enabled":false,"email":"ops@globex.example"}`)
	if got := get(globexKey); got != `{"enabled":false,"email":"ops@globex.example"}` {
		t.Errorf("globex GET %s: want only its own setting", got)
	}
	if got := get(acmeKey); got != `{"enabled":true,"email":"ops@acme.example"}` {
		t.Errorf("acme GET %s", got)
	}

	relay := smtptest.Start(t, smtptest.Options{Username: "relay", Password: "relay-pass", TLS: "starttls"})
	ff := parseForwardFlags(t, nil,
		"--smtp-relay", relay.Addr, "--smtp-user", "relay", "--smtp-password", "relay-pass", "--smtp-auth", "plain",
		"--smtp-tls", "starttls", "--smtp-ca-file", relay.CAFile, "--forward-from", "Bouncer <bounces@bouncer.example>",
		"--forward-group", "fwd-"+topic, "--forward-rate", "3/10s", "--forward-refresh", "1s")
	if !ff.enabled() {
		t.Fatal("a relay is set but forwarding is off")
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	reg := prometheus.NewRegistry()
	wait, err := ff.start(runCtx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, st, enrich.MustNew(), reg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now().Unix()
	ev := func(account, email, reason, extra string) map[string]any {
		m := map[string]any{"event": "bounce", "type": "bounce", "email": email, "timestamp": now, "account_id": account,
			"reason": reason, "status": "5.1.1", "sg_message_id": "sgid-" + email, "smtp-id": "<" + email + ".1@app.example>",
			"sg_event_id": "ev-" + email}
		if extra != "" {
			m["smtp-id"] = extra
		}
		return m
	}
	const hard = "550 5.1.1 <x>: Recipient address rejected: User unknown in virtual mailbox table"
	const soft = "552 5.2.2 Mailbox full: the user's quota is exceeded"
	js := func(v any) []byte { b, _ := json.Marshal(v); return b }

	// 1. Only acme's hard bounce to first@ is forwarded: not globex's (off),
	// not the soft bounce, the delivery, the bounce of the forwarding
	// address itself or of a message the forwarder sent. The last event is
	// the one forwarded, so when it arrives the others were handled.
	delivered := map[string]any{"event": "delivered", "email": "ok@x.org", "timestamp": now, "account_id": "acme"}
	produceFresh(t, brokers, topic, js([]any{
		ev("globex", "g@x.org", hard, ""),
		ev("acme", "soft@x.org", soft, ""),
		delivered,
		ev("acme", "ops@acme.example", hard, ""),
		ev("acme", "loop@x.org", hard, "<bouncer-fwd.00ff@bouncer.example>"),
		ev("acme", "first@x.org", hard, ""),
	}))
	msgs, ok := relay.WaitFor(60*time.Second, func(ms []smtptest.Message) bool { return len(ms) >= 1 })
	if !ok {
		t.Fatal("no report within 60s")
	}
	if len(msgs) != 1 {
		t.Fatalf("%d emails, want only first@x.org's report: %v", len(msgs), subjects(msgs))
	}
	m := msgs[0]
	if m.From != "bounces@bouncer.example" || !slices.Equal(m.To, []string{"ops@acme.example"}) {
		t.Errorf("envelope %s -> %v", m.From, m.To)
	}
	for _, want := range []string{
		"Recipient:      first@x.org", "Reason:         " + hard, "Status:         5.1.1",
		"Classification: Invalid Address (hard", "Event time:     " + time.Unix(now, 0).UTC().Format(time.RFC3339),
		"Message ID:     sgid-first@x.org",
	} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("report lacks %q:\n%s", want, m.Body)
		}
	}
	if id := m.Header.Get("Message-Id"); !strings.HasPrefix(id, "<"+forward.MessageIDPrefix) || !strings.HasSuffix(id, "@bouncer.example>") {
		t.Errorf("Message-ID %q", id)
	}

	// 2. The relay fails twice with 451, then accepts: delivered after
	// retries.
	before := relay.Attempts()
	relay.FailNext(2)
	produceFresh(t, brokers, topic, js(ev("acme", "retry@x.org", hard, "")))
	msgs, ok = relay.WaitFor(60*time.Second, func(ms []smtptest.Message) bool { return len(ms) >= 2 })
	if !ok || !strings.Contains(msgs[1].Body, "retry@x.org") {
		t.Fatalf("no report for retry@x.org after two 451s: %v", subjects(msgs))
	}
	if got := relay.Attempts() - before; got != 3 {
		t.Errorf("%d DATA attempts, want 3 (two 451s, then 250)", got)
	}

	// 3. Eight bounces of burst at once, cap 3 per 10s window: the reports
	// over the cap arrive as a digest at the window's end. However the
	// windows fall, every bounce is in exactly one report or digest, and at
	// least one digest is sent.
	var burst []any
	for i := range 8 {
		burst = append(burst, ev("burst", fmt.Sprintf("b%d@x.org", i), hard, ""))
	}
	produceFresh(t, brokers, topic, js(burst))
	seen := map[string]int{}
	var digests int
	_, ok = relay.WaitFor(60*time.Second, func(ms []smtptest.Message) bool {
		clear(seen)
		digests = 0
		for _, m := range ms[2:] {
			if !slices.Equal(m.To, []string{"alerts@burst.example"}) {
				continue
			}
			if m.Header.Get(forward.HeaderForwarded) == "digest" {
				digests++
			}
			for i := range 8 {
				if strings.Contains(m.Body, fmt.Sprintf("b%d@x.org", i)) {
					seen[fmt.Sprintf("b%d", i)]++
				}
			}
		}
		return len(seen) == 8
	})
	if !ok || digests == 0 {
		t.Fatalf("burst: bounces seen %v, %d digests; want all 8 and a digest (%v)", seen, digests, subjects(relay.Messages()))
	}
	for b, n := range seen {
		if n != 1 {
			t.Errorf("%s reported %d times", b, n)
		}
	}
	if n := counterValue(t, reg, "bouncer_forward_bounces_total", "loop"); n != 2 {
		t.Errorf("loop outcomes %v, want 2", n)
	}

	// 4. A dead relay does not hold the shutdown: the report waiting to be
	// retried gives up its batch (redelivered after a restart).
	relay.FailNext(1 << 30)
	before = relay.Attempts()
	produceFresh(t, brokers, topic, js(ev("acme", "late@x.org", hard, "")))
	waitFor(t, "an attempt for late@x.org", 60*time.Second, func() (bool, string) {
		return relay.Attempts() > before, fmt.Sprintf("%d attempts", relay.Attempts()-before)
	})
	stop()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("wait: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the forwarding group did not stop within 60s of its context ending")
	}

	// 5. Its batch was not committed: restarted with the relay back, the
	// group reports late@x.org.
	relay.FailNext(0)
	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	wait, err = ff.start(runCtx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, st, enrich.MustNew(), prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, ok = relay.WaitFor(60*time.Second, func(ms []smtptest.Message) bool {
		return slices.ContainsFunc(ms, func(m smtptest.Message) bool { return strings.Contains(m.Body, "late@x.org") })
	})
	if !ok {
		t.Fatalf("late@x.org not reported after the restart: %v", subjects(msgs))
	}
	stop()
	if err := wait(); err != nil {
		t.Errorf("wait after the restart: %v", err)
	}
	// Nothing committed before was sent again.
	for _, m := range relay.Messages() {
		if strings.Contains(m.Body, "first@x.org") && m.Header.Get("Message-Id") != msgs[0].Header.Get("Message-Id") {
			t.Errorf("first@x.org reported again after the restart")
		}
	}
}

// produceFresh writes values with a Transport of its own: the shared
// default one caches topic metadata for seconds, so a topic created after
// another test used it can look unknown to it.
func produceFresh(t *testing.T, brokers, topic string, values ...[]byte) {
	t.Helper()
	w, err := consumer.NewWriter(consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, consumer.WriterConfig{BatchTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func subjects(ms []smtptest.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.To[0]+": "+m.Header.Get("Subject"))
	}
	return out
}

// counterValue reads a counter with one label value from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// start builds the forwarding group and runs it on ctx, as the worker does;
// wait returns its final error.
func (f *forwardFlags) start(ctx context.Context, conn consumer.Conn, topic string, store *clickhouse.Store,
	classifier *enrich.Classifier, reg *prometheus.Registry, cm *consumer.Metrics, log *slog.Logger) (wait func() error, err error) {
	svc, err := f.build(conn, topic, store, classifier, reg, cm, log)
	if err != nil || svc == nil {
		return func() error { return nil }, err
	}
	return ops.Go(func() error { return svc.Run(ctx) }), nil
}
