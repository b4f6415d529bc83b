package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/suppression"
)

// A worker's Slices hold only the lists of the partitions held: Hold loads
// a slice (and returns once it holds what was announced before), the slice
// follows its partition while held, lookups of other partitions'
// recipients answer nothing, and a released slice is dropped after Linger
// and loaded again by the next Hold.
func TestSlicesHoldOnlyTheirPartitions(t *testing.T) {
	const partitions = 4
	ctx, conn, topic, w := testChangeLog(t, "changelog.held", partitions)
	at := time.Unix(1764201600, 0)
	bounce := func(email string) suppression.Change {
		return suppression.Change{AccountID: "acme", List: suppression.ListBounces, EmailNorm: email, At: at}
	}
	var changes []suppression.Change
	perPartition := make([]int, partitions)
	for i := range 400 {
		c := bounce(fmt.Sprintf("r%d@example.com", i))
		changes = append(changes, c)
		perPartition[PartitionOf("acme", c.EmailNorm, partitions)]++
	}
	if err := w.PublishChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSlices(ctx, SlicesConfig{Conn: conn, Topic: topic, Linger: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s.Partitions() != partitions {
		t.Fatalf("Partitions() = %d, want %d", s.Partitions(), partitions)
	}
	if err := s.Hold(ctx, "sink/2", []int{2}); err != nil {
		t.Fatal(err)
	}
	if s.Len() != perPartition[2] {
		t.Fatalf("holding partition 2: %d entries, want its %d", s.Len(), perPartition[2])
	}
	if err := s.Loading(ctx); err != nil {
		t.Fatalf("Loading after Hold returned: %v", err)
	}
	for _, c := range changes {
		got := s.DropReasonAt("acme", c.EmailNorm, 0, at.Unix()+1, suppression.Position{})
		if held := s.PartitionOf("acme", c.EmailNorm) == 2; held != (got == "Bounced Address") {
			t.Fatalf("%s (partition %d): drop reason %q", c.EmailNorm, s.PartitionOf("acme", c.EmailNorm), got)
		}
	}

	// A change announced after the load: a new holder's Hold returns only
	// once the slice holds it.
	var late suppression.Change
	for i := 1000; ; i++ {
		if late = bounce(fmt.Sprintf("late%d@example.com", i)); s.PartitionOf("acme", late.EmailNorm) == 2 {
			break
		}
	}
	if err := w.PublishChanges(ctx, []suppression.Change{late}); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, "webhooks/2", []int{2}); err != nil {
		t.Fatal(err)
	}
	if got := s.DropReasonAt("acme", late.EmailNorm, 0, at.Unix()+1, suppression.Position{}); got != "Bounced Address" {
		t.Fatalf("a change announced before a Hold is not seen after it: %q", got)
	}

	// Released by both holders: dropped after Linger.
	s.Release("sink/2")
	s.Release("webhooks/2")
	deadline := time.Now().Add(30 * time.Second)
	for len(s.Held()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("released slices still held: %v", s.Held())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.Len() != 0 {
		t.Fatalf("no slice held, %d entries", s.Len())
	}
	// Applying for a recipient whose slice is not held changes nothing.
	s.Apply(bounce(late.EmailNorm))
	if s.Len() != 0 {
		t.Fatalf("Apply to an unheld slice: %d entries", s.Len())
	}
	// Held again: loaded again, with the late change.
	if err := s.Hold(ctx, "sink/2", []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	if want := perPartition[2] + 1 + perPartition[3]; s.Len() != want {
		t.Fatalf("holding 2 and 3 again: %d entries, want %d", s.Len(), want)
	}
	// A Hold that cannot finish says so.
	short, stop := context.WithCancel(ctx)
	stop()
	if err := s.Hold(short, "sink/0", []int{0}); err == nil {
		t.Fatal("Hold of a new slice with an ended context: want an error")
	}
	// A consumer partition that comes to hold another partition's slice
	// (an event in the wrong partition, not re-routed) is counted; its
	// own, and owners that are not partitions, are not.
	if got := value(s.foreign); got != 0 {
		t.Fatalf("foreign holds before any partition owner: %v", got)
	}
	own := partitionOwner(1)
	for _, parts := range [][]int{{1}, {1}, {1, 3}, {3}} {
		if err := s.Hold(ctx, own, parts); err != nil {
			t.Fatal(err)
		}
	}
	if got := value(s.foreign); got != 1 {
		t.Fatalf("foreign holds: %v, want 1 (slice 3 for the owner of partition 1)", got)
	}
}

type partitionOwner int

func (o partitionOwner) OwnPartition() int { return int(o) }

// A change log written before bouncer partitioned it by recipient (keys in
// the partition kafka.Hash chose) makes Hold fail with what to do, and
// /readyz says it; tombstones of the misplaced keys (what bouncer
// changelog repartition writes after copying them) make the slice usable.
func TestSlicesRefuseAMisplacedChangeLog(t *testing.T) {
	conn := Conn{Brokers: testenv.Brokers(testenv.Kafka(t))}
	topic := fmt.Sprintf("test.changelog.misplaced.%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const partitions = 4
	if err := EnsureChangeLog(ctx, conn, topic, partitions); err != nil {
		t.Fatal(err)
	}
	c := suppression.Change{AccountID: "acme", List: suppression.ListBounces, EmailNorm: "old@example.com", At: time.Unix(1764201600, 0)}
	right := PartitionOf(c.AccountID, c.EmailNorm, partitions)
	wrong := (right + 1) % partitions
	value, err := json.Marshal(toMessage(c))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(ChangeKey(c))
	write := func(partition int, value []byte) {
		t.Helper()
		pw, err := NewWriter(conn, topic, WriterConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		pw.Balancer = kafka.BalancerFunc(func(kafka.Message, ...int) int { return partition })
		if err := pw.WriteMessages(ctx, kafka.Message{Key: key, Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	write(wrong, value)
	s, err := OpenSlices(ctx, SlicesConfig{Conn: conn, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Hold(ctx, "sink", []int{wrong})
	if err == nil || !strings.Contains(err.Error(), "bouncer changelog repartition") {
		t.Fatalf("Hold of a partition holding another's change: %v, want the repartition advice", err)
	}
	if err := s.Loading(ctx); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("partition %d holds 1 changes", wrong)) {
		t.Fatalf("Loading: %v", err)
	}
	// The repartitioned copy, then the tombstone of the old one.
	write(right, value)
	write(wrong, nil)
	if err := s.Hold(ctx, "sink2", []int{wrong, right}); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, "sink", []int{wrong}); err != nil {
		t.Fatalf("the first holder, after the tombstone: %v", err)
	}
	if got := s.DropReasonAt(c.AccountID, c.EmailNorm, 0, c.At.Unix(), suppression.Position{}); got != "Bounced Address" {
		t.Fatalf("the repartitioned change: drop reason %q", got)
	}
}
