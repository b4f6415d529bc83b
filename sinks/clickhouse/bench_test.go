package clickhouse

import (
	"context"
	"testing"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestBenchCount: the bench's row count (from system.parts) is the events
// table's count(), also across several inserts, and 0 for a database
// without rows.
func TestBenchCount(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	b, err := OpenBench(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := b.Count(ctx, s.cfg.Database); err != nil || n != 0 {
		t.Fatalf("empty: %d, %v; want 0", n, err)
	}
	for i := range 3 {
		rows := []pipeline.Row{{Event: schemas.Event{Topic: "t", Partition: i, Offset: 1, Event: "delivered", Email: "a@x.org", EmailNorm: "a@x.org", AccountID: "acme", Timestamp: 1764201600}},
			{Event: schemas.Event{Topic: "t", Partition: i, Offset: 2, Event: "open", Email: "a@x.org", EmailNorm: "a@x.org", AccountID: "acme", Timestamp: 1764201601}}}
		if err := s.WriteEvents(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	var want uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&want); err != nil || want != 6 {
		t.Fatalf("count(): %d, %v", want, err)
	}
	if n, err := b.Count(ctx, s.cfg.Database); err != nil || n != want {
		t.Errorf("Count: %d, %v; want %d", n, err, want)
	}
}
