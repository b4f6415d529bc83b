package clickhouse

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// TestGroupCreatesOfSeveralProcesses: stores that share nothing but
// ClickHouse (as API processes do) create groups at the same moment, with
// the same clock: every create gets an id of its own, and each id holds
// exactly the group that was answered for it.
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
}
