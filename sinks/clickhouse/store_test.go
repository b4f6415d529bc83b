package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	cfg := Config{Addr: []string{addr}, Database: db}
	if _, err := Migrate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestHighWaterAndWrites(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	m, err := s.HighWater(ctx, "t", 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Events != -1 || m.DeadLetters != -1 {
		t.Fatalf("empty tables: marks %+v, want -1/-1", m)
	}
	res := enrich.Result{BounceType: enrich.Hard, Classification: enrich.InvalidAddress, Reason: "user_unknown", Rule: "r"}
	rows := []pipeline.Row{
		{Event: schemas.Event{Topic: "t", Partition: 2, Offset: 0, Event: "processed", Email: "a@x.org", EmailNorm: "a@x.org", AccountID: "default", Timestamp: 1764201600}},
		{Event: schemas.Event{Topic: "t", Partition: 2, Offset: 7, Index: 1, Event: "bounce", Email: "B@x.org", EmailNorm: "b@x.org", AccountID: "acme", Timestamp: 1764201601, Categories: []string{"c1"}}, Bounce: &res},
		{Event: schemas.Event{Topic: "t", Partition: 3, Offset: 9, Event: "open", Email: "c@x.org", EmailNorm: "c@x.org", AccountID: "default", Timestamp: 1764201602}},
	}
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteDeadLetters(ctx, []schemas.DeadLetter{{Topic: "t", Partition: 2, Offset: 4, Index: -1, Code: "empty", Raw: []byte{0xff, 0}}}); err != nil {
		t.Fatal(err)
	}
	m, err = s.HighWater(ctx, "t", 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Events != 7 || m.DeadLetters != 4 {
		t.Fatalf("marks %+v, want events 7, dead letters 4", m)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM events WHERE reason_code = 'user_unknown' AND bounce_type = 'hard' AND categories = ['c1'] AND msg_index = 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("bounce row: %d, %v", n, err)
	}
	var raw string
	if err := s.conn.QueryRow(ctx, "SELECT raw FROM dead_letters").Scan(&raw); err != nil || raw != "\xff\x00" {
		t.Fatalf("dead letter raw bytes %q, %v: want them verbatim", raw, err)
	}
}

func TestSuppressionVersionOrdersByEventTime(t *testing.T) {
	t0 := time.Unix(1764201600, 0)
	if !(suppression.Change{At: t0, Deleted: false}.Version() < suppression.Change{At: t0, Deleted: true}.Version()) {
		t.Error("a removal must win a tie with an addition")
	}
	if !(suppression.Change{At: t0, Deleted: true}.Version() < suppression.Change{At: t0.Add(time.Second), Deleted: false}.Version()) {
		t.Error("a later addition must win over an earlier removal")
	}
}

func TestDropExpired(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	// Rows ingested in January 2020 and now.
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO events (ingest_date, kafka_topic, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	batch.Append(time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC), "old", uint64(1))
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"stats_marks", "message_index"} {
		b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" (ingest_date, account_id)")
		if err != nil {
			t.Fatal(err)
		}
		b.Append(time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC), "old")
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WriteEvents(ctx, []pipeline.Row{{Event: schemas.Event{Topic: "new", Event: "open", AccountID: "default"}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dropped, err := s.DropExpired(ctx, 3, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"events:202001", "stats_marks:202001", "message_index:202001"}; !slices.Equal(dropped, want) {
		t.Errorf("dropped %v, want %v", dropped, want)
	}
	var topics []string
	rows, err := s.conn.Query(ctx, "SELECT kafka_topic FROM events")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tp string
		rows.Scan(&tp)
		topics = append(topics, tp)
	}
	rows.Close()
	if !slices.Equal(topics, []string{"new"}) {
		t.Errorf("left %v, want only this month's row", topics)
	}
	if _, err := s.DropExpired(ctx, 0, now); err == nil {
		t.Error("keep 0 months: want an error")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {Addr: []string{"nohostport"}}, {Addr: []string{"h:1"}, Database: "x;drop"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
	c := Config{Addr: []string{"h:9000"}}
	if err := c.Validate(); err != nil || c.Database != "bouncer" || c.InsertTimeout != 30*time.Second {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("stats.global: %w", ch.ErrAcquireConnTimeout), true},
		{fmt.Errorf("stats.global: %w", &proto.Exception{Code: 202, Message: "Too many simultaneous queries"}), true},
		{fmt.Errorf("stats.global: %w", &proto.Exception{Code: 62, Message: "Syntax error"}), false},
		{errors.New("something else"), false},
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestIngestClock: the ingest date and time of the sink's writes (the
// partition retention drops) come from Config.Now, not the wall clock.
func TestIngestClock(t *testing.T) {
	addr := testenv.ClickHouse(t)
	at := time.Date(2020, 1, 15, 13, 4, 5, 600, time.UTC)
	cfg := Config{Addr: []string{addr}, Database: testenv.Database(t, addr), Now: func() time.Time { return at }}
	if _, err := Migrate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.WriteEvents(ctx, []pipeline.Row{{Event: schemas.Event{Topic: "t", Event: "open", AccountID: "default", Timestamp: 1764201600}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteDeadLetters(ctx, []schemas.DeadLetter{{Topic: "t", Offset: 1, Index: -1, Code: "empty"}}); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events", "dead_letters"} {
		var date, ingested time.Time
		if err := s.conn.QueryRow(ctx, "SELECT ingest_date, ingested_at FROM "+table).Scan(&date, &ingested); err != nil {
			t.Fatal(table, err)
		}
		if !date.Equal(time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC)) || !ingested.Equal(at.Truncate(time.Second)) {
			t.Errorf("%s: ingest_date %s, ingested_at %s; want the clock's day and second (%s)", table, date, ingested, at)
		}
	}
	if dropped, err := s.DropExpired(ctx, 3, time.Now()); err != nil || !slices.Contains(dropped, "events:202001") {
		t.Errorf("retention: dropped %v, %v; want January 2020's events", dropped, err)
	}
}
