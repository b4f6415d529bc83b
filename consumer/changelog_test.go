package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/suppression"
)

// CatchUp returns only once the index holds every change announced before
// the call (what a partition's previous owner announced), also when the
// first bootstrap broker is dead, and a change's event position survives
// the change log.
func TestIndexFollowerCatchUp(t *testing.T) {
	ctx, conn, topic, w := testChangeLog(t, "changelog", 3)
	at := time.Unix(1764201600, 0)
	change := func(i int) suppression.Change {
		return suppression.Change{AccountID: "acme", List: suppression.ListBounces, EmailNorm: fmt.Sprintf("r%d@example.com", i),
			At: at, Src: suppression.Position{Topic: "events", Partition: 1, Offset: int64(100 + i)}}
	}
	if err := w.PublishChanges(ctx, []suppression.Change{change(0)}); err != nil {
		t.Fatal(err)
	}
	// The first bootstrap broker is dead: the others serve.
	dead := Conn{Brokers: append([]string{"127.0.0.1:1"}, conn.Brokers...)}
	f, err := FollowIndex(ctx, dead, topic, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if f.Index.Len() != 1 {
		t.Fatalf("loaded %d entries, want 1", f.Index.Len())
	}
	const n = 2000
	var batch []suppression.Change
	for i := 1; i < n; i++ {
		batch = append(batch, change(i))
	}
	if err := w.PublishChanges(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := f.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Index.Len() != n {
		t.Fatalf("after CatchUp the index holds %d entries, want %d", f.Index.Len(), n)
	}
	// The bounce of r5 came from the event at events/1@105: the event
	// there does not see it, the next one does.
	email := "r5@example.com"
	if r := f.Index.DropReasonAt("acme", email, 0, at.Unix(), suppression.Position{Topic: "events", Partition: 1, Offset: 105}); r != "" {
		t.Fatalf("the event that caused the change sees it: %q", r)
	}
	if r := f.Index.DropReasonAt("acme", email, 0, at.Unix(), suppression.Position{Topic: "events", Partition: 1, Offset: 106}); r != "Bounced Address" {
		t.Fatalf("the next event: %q, want Bounced Address", r)
	}
	// A CatchUp that cannot finish says how far behind the index is.
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if err := f.CatchUp(short); err == nil {
		t.Fatal("CatchUp with an ended context: want an error")
	}
}

// Every change goes to its recipient's partition (PartitionOf), whatever
// its list, and LoadSlice reads exactly one partition's changes.
func TestChangeLogPartitionedByRecipient(t *testing.T) {
	const partitions = 3
	ctx, conn, topic, w := testChangeLog(t, "changelog.slices", partitions)
	var changes []suppression.Change
	for i := range 300 {
		for _, list := range []string{suppression.ListBounces, suppression.ListUnsubscribes} {
			changes = append(changes, suppression.Change{AccountID: fmt.Sprintf("a%d", i%3), List: list, GroupID: int64(i % 2),
				EmailNorm: fmt.Sprintf("r%d@example.com", i), At: time.Unix(1764201600, 0)})
		}
	}
	if err := w.PublishChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	total := 0
	for p := range partitions {
		n, err := LoadSlice(ctx, conn, topic, p, func(c suppression.Change) {
			if got := PartitionOf(c.AccountID, c.EmailNorm, partitions); got != p {
				t.Errorf("%s/%s/%s is in partition %d, PartitionOf says %d", c.AccountID, c.List, c.EmailNorm, p, got)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("partition %d holds no change", p)
		}
		total += n
	}
	if total != len(changes) {
		t.Fatalf("slices hold %d changes, want %d", total, len(changes))
	}
}

// testChangeLog opens a new change log (test.name.<time>) of partitions on
// the test Kafka and a context of 2 minutes, both ended with the test.
func testChangeLog(t *testing.T, name string, partitions int) (context.Context, Conn, string, *ChangeWriter) {
	t.Helper()
	conn := Conn{Brokers: testenv.Brokers(testenv.Kafka(t))}
	topic := fmt.Sprintf("test.%s.%d", name, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w, err := OpenChangeLog(ctx, conn, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return ctx, conn, topic, w
}
