package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/suppression"
)

// TestGroupCreatesOfSeveralProcesses: stores that share nothing but
// ClickHouse and the claims topic (as API processes do) create groups at
// the same moment, with the same clock: every create gets an id of its own,
// and each id holds exactly the group that was answered for it. (Without
// the log, a create whose insert lands more than 100ms after its stamp
// could share an id: CI at 80248dc, load 40.)
func TestGroupCreatesOfSeveralProcesses(t *testing.T) {
	first := openTestStore(t)
	stores := []*Store{first}
	for range 3 {
		s, err := Open(context.Background(), first.cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	log := useGroupLogs(t, stores...)
	at := time.Unix(1764201600, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int64]string{}
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := string(rune('a' + i))
			g, err := stores[i%len(stores)].CreateGroup(context.Background(), "acme", suppression.Group{Name: name}, at)
			if err != nil {
				t.Errorf("create %s: %v", name, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if prev, dup := got[g.ID]; dup {
				t.Errorf("id %d answered for %s and %s", g.ID, prev, name)
			}
			got[g.ID] = name
		}()
	}
	wg.Wait()
	gs, err := first.Groups(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 12 {
		t.Errorf("%d groups stored, want 12: %+v", len(gs), gs)
	}
	for _, g := range gs {
		if got[g.ID] != g.Name {
			t.Errorf("group %d holds %q, the create was answered %q", g.ID, g.Name, got[g.ID])
		}
	}
	if others, _ := first.Groups(context.Background(), "globex"); len(others) != 0 {
		t.Errorf("globex's groups: %+v", others)
	}
	ids := slices.Sorted(func(yield func(int64) bool) {
		for id := range got {
			if !yield(id) {
				return
			}
		}
	})
	if len(ids) != 12 || ids[0] != 1 {
		t.Errorf("ids %v, want 12 from 1", ids)
	}
	// The ids came from the log's order (a create that skipped the log
	// could share an id with one of another process under load: CI at
	// 013dbfc, load 30, answered id 4 twice).
	entries, err := log.Read(context.Background(), first.cfg.Database+"/unsubscribe_groups", "acme")
	if err != nil {
		t.Fatal(err)
	}
	decided := decideGroupIDs(entries)
	if len(decided) != 12 {
		t.Errorf("the group log decided %d creates, want 12: %v", len(decided), decided)
	}
	for _, id := range decided {
		if _, ok := got[id]; !ok {
			t.Errorf("the log gave id %d, which no create was answered (answered %v)", id, ids)
		}
	}
}

// useGroupLogs gives each store a claims log of its own on one new topic,
// as separate API processes have, and returns the first store's.
func useGroupLogs(t *testing.T, stores ...*Store) *claims.Log {
	t.Helper()
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, brokers, 1) + ".claims"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, s := range stores {
		l, err := claims.Open(ctx, consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, 3)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		s.UseGroupLog(l)
	}
	return stores[0].groupLog.(*claims.Log)
}

// Two processes naming the same implicit group at once: exactly one
// succeeds, and the id holds its name.
func TestGroupNamingRaceOfSeveralProcesses(t *testing.T) {
	first := openTestStore(t)
	second, err := Open(context.Background(), first.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	useGroupLogs(t, first, second)
	at := time.Unix(1764201600, 0)
	for round := range 3 {
		id := int64(40 + round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []*Store{first, second} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.CreateGroup(context.Background(), "acme", suppression.Group{ID: id, Name: fmt.Sprint("n", i)}, at)
			}()
		}
		wg.Wait()
		ok := 0
		winner := ""
		for i, err := range errs {
			if err == nil {
				ok++
				winner = fmt.Sprint("n", i)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d of 2 namings of id %d succeeded (%v)", round, ok, id, errs)
		}
		gs, err := first.Groups(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, g := range gs {
			if g.ID == id {
				found = true
				if g.Name != winner {
					t.Errorf("group %d holds %q; the successful naming was %q", id, g.Name, winner)
				}
			}
		}
		if !found {
			t.Errorf("group %d not listed: %+v", id, gs)
		}
	}
}

// The ids are a pure function of the log: creates in log order, each with
// the floor its process read, a fixed id taken once.
func TestDecideGroupIDs(t *testing.T) {
	c := func(nonce string, floor, fixed int64) claims.Claim {
		row, _ := json.Marshal(groupClaim{Floor: floor, Fixed: fixed})
		return claims.Claim{Op: groupOp, ID: nonce, Row: row}
	}
	log := []claims.Claim{
		c("a", 0, 0), // 1
		c("b", 0, 0), // 2: read the same floor, later in the log
		c("c", 7, 0), // 8: an unsubscribe used 7
		c("d", 0, 5), // 5: named
		c("e", 0, 5), // taken: no id
		c("f", 3, 0), // 9
		{Op: claims.OpCreate, ID: "webhook"},
		c("g", 0, 12), // 12
		c("h", 0, 0),  // 13
	}
	got := decideGroupIDs(log)
	want := map[string]int64{"a": 1, "b": 2, "c": 8, "d": 5, "f": 9, "g": 12, "h": 13}
	if !maps.Equal(got, want) {
		t.Errorf("decided %v, want %v", got, want)
	}
}
