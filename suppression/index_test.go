package suppression

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

func change(list string, group int64, at int64, deleted bool) Change {
	return Change{AccountID: "acme", List: list, GroupID: group, EmailNorm: "kim@example.com",
		At: time.Unix(at, 0), Deleted: deleted, ReasonCode: "user_unknown"}
}

// Any order of the same changes gives the same index.
func TestApplyOrderDoesNotMatter(t *testing.T) {
	changes := []Change{
		change(ListBounces, 0, 100, false),
		change(ListBounces, 0, 200, true),  // an API delete at T=200
		change(ListBounces, 0, 150, false), // a bounce before T: stays deleted
		change(ListSpamReports, 0, 120, false),
		change(ListUnsubscribes, 7, 130, false),
		change(ListUnsubscribes, 7, 140, true),
		change(ListBounces, 0, 100, false), // a duplicate
	}
	want := []Membership{{List: ListSpamReports, ReasonCode: "user_unknown"}}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 200; i++ {
		ix := New()
		for _, j := range rng.Perm(len(changes)) {
			ix.Apply(changes[j])
		}
		if got := ix.Lookup("acme", "kim@example.com"); !slices.Equal(got, want) {
			t.Fatalf("order %d: lookup %+v, want %+v", i, got, want)
		}
		if ix.Len() != 1 {
			t.Fatalf("order %d: Len %d, want 1", i, ix.Len())
		}
	}
}

func TestBounceAfterDeleteReAdds(t *testing.T) {
	ix := New()
	ix.Apply(change(ListBounces, 0, 100, false))
	ix.Apply(change(ListBounces, 0, 200, true))
	if len(ix.Lookup("acme", "kim@example.com")) != 0 {
		t.Fatal("deleted entry still listed")
	}
	ix.Apply(change(ListBounces, 0, 300, false))
	if got := ix.Lookup("acme", "kim@example.com"); len(got) != 1 || got[0].List != ListBounces {
		t.Fatalf("bounce after the delete: %+v", got)
	}
	// A removal and an addition in the same second: the removal wins.
	ix.Apply(change(ListBounces, 0, 300, true))
	if len(ix.Lookup("acme", "kim@example.com")) != 0 {
		t.Fatal("removal lost a tie")
	}
}

func TestDropReason(t *testing.T) {
	ix := New()
	if r := ix.DropReason("acme", "kim@example.com", 0, 1000); r != "" {
		t.Fatalf("empty index: %q", r)
	}
	ix.Apply(change(ListBlocks, 0, 100, false))
	if r := ix.DropReason("acme", "kim@example.com", 0, 1000); r != "" {
		t.Fatalf("a block must not drop: %q", r)
	}
	ix.Apply(change(ListUnsubscribes, 7, 100, false))
	if r := ix.DropReason("acme", "kim@example.com", 8, 1000); r != "" {
		t.Fatalf("group 7 unsubscribe dropped a group 8 message: %q", r)
	}
	if r := ix.DropReason("acme", "kim@example.com", 7, 1000); r != "Unsubscribed Address" {
		t.Fatalf("group 7 message: %q", r)
	}
	ix.Apply(change(ListBounces, 0, 500, false))
	if r := ix.DropReason("acme", "kim@example.com", 0, 400); r != "" {
		t.Fatalf("dropped a message sent before the bounce: %q", r)
	}
	if r := ix.DropReason("acme", "kim@example.com", 7, 600); r != "Bounced Address" {
		t.Fatalf("bounce outranks unsubscribe: %q", r)
	}
	if r := ix.DropReason("globex", "kim@example.com", 7, 600); r != "" {
		t.Fatalf("another account's list leaked: %q", r)
	}
}

// BenchmarkIndex measures lookups and memory per suppressed address:
//
//	go test -run '^$' -bench Index -benchmem ./suppression/
func BenchmarkIndexLookup(b *testing.B) {
	ix := New()
	const n = 1_000_000
	emails := make([]string, n)
	for i := range emails {
		emails[i] = "user" + itoa(i) + "@example.com"
		ix.Apply(Change{AccountID: "acme", List: ListBounces, EmailNorm: emails[i], At: time.Unix(100, 0), ReasonCode: "user_unknown"})
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ix.DropReason("acme", emails[i%n], 0, 1000)
			i += 7919
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[p:])
		}
	}
}

// BenchmarkIndexMemory reports the heap the index takes per suppressed
// address, built from one million bounce changes.
func BenchmarkIndexMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ix := New()
		for j := 0; j < 1_000_000; j++ {
			ix.Apply(Change{AccountID: "acme", List: ListBounces,
				EmailNorm: "user" + itoa(j) + "@example.com", At: time.Unix(100, 0), ReasonCode: "user_unknown"})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/1e6, "heap-bytes/address")
		runtime.KeepAlive(ix)
	}
}
