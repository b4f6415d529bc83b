package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/suppression"
)

// bouncer changelog repartition turns a change log written before the
// partitioning by recipient (kafka.Hash of the key) into one the workers'
// slices accept, with the same lists: every change is found in its
// recipient's slice, a change its recipient's partition already held in a
// newer version stays the newer one, and a second run finds nothing to do.
func TestChangelogRepartition(t *testing.T) {
	brokers := testenv.Kafka(t)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("test.changelog.repartition.%d", time.Now().UnixNano())
	const partitions = 4
	if err := consumer.EnsureChangeLog(ctx, conn, topic, partitions); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1764201600, 0)
	var old []kafka.Message
	var changes []suppression.Change
	for i := range 200 {
		c := suppression.Change{AccountID: fmt.Sprintf("a%d", i%3), List: suppression.ListBounces, EmailNorm: fmt.Sprintf("r%d@example.com", i), At: at}
		changes = append(changes, c)
		v, err := json.Marshal(consumer.ChangeMessage{AccountID: c.AccountID, List: c.List, EmailNorm: c.EmailNorm, Email: c.EmailNorm, At: at, Version: c.Version()})
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, kafka.Message{Key: []byte(consumer.ChangeKey(c)), Value: v})
	}
	// The old writer: kafka-go's hash of the key.
	w, err := consumer.NewWriter(conn, topic, consumer.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w.Balancer = &kafka.Hash{}
	if err := w.WriteMessages(ctx, old...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// A newer change of r0 (a removal) written by the new writer, in its
	// recipient's partition: it must stay the newest.
	removed := changes[0]
	removed.Deleted, removed.At = true, at.Add(time.Hour)
	cw, err := consumer.NewChangeWriter(conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := cw.PublishChanges(ctx, []suppression.Change{removed}); err != nil {
		t.Fatal(err)
	}
	cw.Close()

	repartition := func(args ...string) string {
		t.Helper()
		var out syncBuffer
		env := envFunc(map[string]string{"KAFKA_BROKERS": brokers, "BOUNCER_CHANGELOG_TOPIC": topic})
		if err := run(ctx, append([]string{"bouncer", "changelog", "repartition"}, args...), env, strings.NewReader(""), &out, &out); err != nil {
			t.Fatalf("repartition %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	dry := repartition("--dry-run")
	if !strings.Contains(dry, "would write") || strings.Contains(dry, " 0 keys outside") {
		t.Fatalf("dry run: %s", dry)
	}
	s, err := consumer.OpenSlices(ctx, consumer.SlicesConfig{Conn: conn, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, "before", []int{0, 1, 2, 3}); err == nil || !strings.Contains(err.Error(), "repartition") {
		t.Fatalf("slices of the old log: %v, want the advice to repartition", err)
	}
	t.Log(repartition())
	if again := repartition(); !strings.Contains(again, " 0 keys outside") {
		t.Fatalf("a second run: %s", again)
	}
	s2, err := consumer.OpenSlices(ctx, consumer.SlicesConfig{Conn: conn, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Hold(ctx, "after", []int{0, 1, 2, 3}); err != nil {
		t.Fatalf("slices of the repartitioned log: %v", err)
	}
	for i, c := range changes {
		got := s2.DropReasonAt(c.AccountID, c.EmailNorm, 0, at.Unix()+7200, suppression.Position{})
		if want := map[bool]string{true: "", false: "Bounced Address"}[i == 0]; got != want {
			t.Errorf("%s/%s: drop reason %q, want %q", c.AccountID, c.EmailNorm, got, want)
		}
	}
}
