package claims

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// The log against a real Kafka: concurrent appends of several accounts each
// get an offset, and an account's Read returns exactly its claims in offset
// order, each claim acknowledged before the Read among them.
func TestLogAppendRead(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1) + ".claims"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Open(ctx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, err := l.Read(ctx, "db", "acme"); err != nil || len(got) != 0 {
		t.Fatalf("empty log: %v %v", got, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	offsets := map[string]int64{}
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := []string{"acme", "globex"}[i%2]
			c, err := l.Append(ctx, Claim{Op: OpCreate, Scope: "db", Account: acct, ID: fmt.Sprint("s", i), URL: "u"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			offsets[c.ID] = c.Offset
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Another deployment's claims on the same topic are not acme's.
	if _, err := l.Append(ctx, Claim{Op: OpCreate, Scope: "other-db", Account: "acme", ID: "foreign"}); err != nil {
		t.Fatal(err)
	}
	got, err := l.Read(ctx, "db", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("read %d claims of acme, want 10: %+v", len(got), got)
	}
	for i, c := range got {
		if c.Account != "acme" || c.Scope != "db" || offsets[c.ID] != c.Offset || i > 0 && c.Offset <= got[i-1].Offset {
			t.Errorf("claim %d: %+v (appended at %d)", i, c, offsets[c.ID])
		}
	}
}

// BenchmarkLogRead: what one claim's decision reads, with 2000 claims of
// 2000 accounts (about 700 bytes each, a sealed row's size) in its one
// partition: go test -run '^$' -bench LogRead -benchtime 20x ./sinks/webhook/claims/
func BenchmarkLogRead(b *testing.B) {
	brokers := testenv.Kafka(b)
	topic := testenv.Topic(b, brokers, 1) + ".claims"
	ctx := context.Background()
	l, err := Open(ctx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	row := []byte(`"` + strings.Repeat("x", 640) + `"`)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 2000; i += 8 {
				if _, err := l.Append(ctx, Claim{Op: OpCreate, Scope: "db", Account: fmt.Sprint("acct", i), ID: fmt.Sprint("s", i), URL: "https://hooks.example.com/x", Row: row}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		got, err := l.Read(ctx, "db", "acct7")
		if err != nil || len(got) != 1 {
			b.Fatalf("%v %v", got, err)
		}
	}
}

// A topic whose partition count is not the one a claim was written with
// is refused: the account's earlier claims may be in another partition.
func TestLogRefusesChangedPartitionCount(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1) + ".claims"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Open(ctx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acct := "acme"
	for i := 0; Partition(acct, 2) != 0; i++ {
		acct = fmt.Sprint("acme", i) // one that stays in partition 0 of 2
	}
	if _, err := l.Append(ctx, Claim{Op: OpCreate, Scope: "db", Account: acct, ID: "a"}); err != nil {
		t.Fatal(err)
	}
	l.partitions = 2 // as if the topic had grown since
	_, err = l.Read(ctx, "db", acct)
	if err == nil || !strings.Contains(err.Error(), "had 1 partitions when claim 0 was written and has 2 now") {
		t.Fatalf("read after the count changed: %v", err)
	}
}
