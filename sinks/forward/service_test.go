package forward

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/forward/smtptest"
)

// TestServiceShutdown: the forwarding Service forwards the bounces of its
// topic; Shutdown stops it in its own order (the pending digest is sent
// and the handled batches are committed before it returns), returns nil
// however often it is called, and is not held by a relay that keeps
// failing. A Service shut down before it ran never runs.
func TestServiceShutdown(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	srv := smtptest.Start(t, smtptest.Options{})
	settings := &staticSettings{list: []accounts.ForwardBounce{{AccountID: "acme", Enabled: true, Email: "ops@acme.example"},
		{AccountID: "globex", Enabled: true, Email: "ops@globex.example"}}}
	newService := func() *Service {
		t.Helper()
		s, err := NewService(Config{
			Relay: Relay{Addr: srv.Addr, RootCAs: srv.CAPool}, From: "bounces@forwarder.example", Settings: settings, Classifier: classifier,
			RateLimit: 1, RateWindow: time.Hour, RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
			MaxAge: 1 << 62, // the events are from 2025-11-27
		}, consumer.GroupConfig{Conn: conn, Topic: topic, GroupID: topic + ".forward", MaxWait: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	w, err := consumer.NewWriter(conn, topic, consumer.WriterConfig{BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	produce := func(account string, emails ...string) {
		t.Helper()
		for _, e := range emails {
			if err := w.WriteMessages(ctx, kafka.Message{Value: event(account, e, hardReason, "")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sentTo := func(email string) (n int) {
		for _, m := range srv.Messages() {
			if strings.Contains(m.Body, email) {
				n++
			}
		}
		return n
	}
	run := func(s *Service) chan error {
		ran := make(chan error, 1)
		go func() { ran <- s.Run(context.Background()) }()
		return ran
	}
	shutdown := func(s *Service, ran chan error) {
		t.Helper()
		for range 2 {
			sctx, stop := context.WithTimeout(ctx, 30*time.Second)
			err := s.Shutdown(sctx)
			stop()
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}
		if err := <-ran; err != nil {
			t.Errorf("Run after Shutdown: %v", err)
		}
	}

	// One report per hour: a's is sent, b's waits in the window's digest.
	s := newService()
	ran := run(s)
	produce("acme", "a@x.org", "b@x.org")
	digested := s.Forwarder().m.bounces.WithLabelValues(OutcomeDigested)
	for sentTo("a@x.org") == 0 || counter(t, digested) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("a's report and b's digest entry not there in 2 minutes (%d messages)", len(srv.Messages()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	shutdown(s, ran)
	if sentTo("b@x.org") != 1 {
		t.Errorf("b's digest not sent on Shutdown: %d messages", len(srv.Messages()))
	}

	// The batches were committed: the next member starts after them.
	s = newService()
	ran = run(s)
	produce("acme", "c@x.org")
	if _, ok := srv.WaitFor(time.Minute, func([]Message) bool { return sentTo("c@x.org") > 0 }); !ok {
		t.Fatal("c's report not sent in a minute")
	}
	if n := sentTo("a@x.org"); n != 1 {
		t.Errorf("a's report sent %d times: the first member's batch was not committed", n)
	}

	// A relay that keeps failing holds neither Handle nor Shutdown: the
	// send waiting to retry gives up, its batch is left uncommitted.
	// (globex: acme's report of this window is taken by c.)
	srv.FailNext(1 << 20)
	attempts := srv.Attempts()
	produce("globex", "d@x.org")
	for srv.Attempts() == attempts {
		if ctx.Err() != nil {
			t.Fatal("no attempt to send d's report in 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	shutdown(s, ran)

	idle := newService()
	if err := idle.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown before Run: %v", err)
	}
	if err := idle.Run(ctx); err == nil {
		t.Error("Run after Shutdown ran")
	}
}
