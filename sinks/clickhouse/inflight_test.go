package clickhouse

import (
	"context"
	"testing"
	"time"
)

// An insert of a partition still running on the server (its worker gave it
// up, or died) holds HighWater back until it finished, so the marks count
// its rows: read before, they would not, and the batch would be sent again.
func TestHighWaterWaitsForARunningInsert(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	insertCtx := withWriteID(ctx, "events", []string{"t"}, []int{3})
	done := make(chan error, 1)
	go func() {
		// Two seconds on the server before the row lands.
		done <- s.conn.Exec(insertCtx, "INSERT INTO events (ingest_date, kafka_topic, kafka_partition, kafka_offset, account_id, event, timestamp) "+
			"SELECT today(), 't', 3, 41, 'acme', 'delivered', toDateTime(1764201600) FROM system.one WHERE sleep(2) = 0")
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ids []string
		if err := collect(ctx, s.conn, qRunningWrites, &ids, uint32(len(writeQueryPrefix)), writeQueryPrefix, partitionTag("t", 3)); err != nil {
			t.Fatal(err)
		}
		if len(ids) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the insert never showed in system.processes (%v)", <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Another partition's marks do not wait for it.
	t0 := time.Now()
	if m, err := s.HighWater(ctx, "t", 2); err != nil || m.Events != -1 {
		t.Fatalf("HighWater(t, 2) = %+v, %v; want no events", m, err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("HighWater of another partition took %s: it waited for partition 3's insert", d)
	}
	m, err := s.HighWater(ctx, "t", 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m.Events != 41 {
		t.Fatalf("HighWater(t, 3) while the insert ran = %+v, want events at 41 (it read before the insert landed)", m)
	}
}
