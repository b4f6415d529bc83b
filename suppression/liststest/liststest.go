// Package liststest is the conformance suite of a suppression list store
// as the API uses it (api.Store's list methods; suppression.Service over
// ClickHouse in production): the same tests run against the ClickHouse
// implementation and against the in-memory fake of the API's unit tests,
// so the fake cannot drift from what the API relies on (watermill's
// pubsub/tests idea).
//
// What the suite holds a store to:
//
//   - Reads see the current entries of one account, list and group only:
//     per address, the change with the highest Version wins (a later event
//     time; a removal wins a tie with an addition in the same second).
//   - Suppressions answers newest first (by created, then address), pages
//     with Offset and Limit (0: 500) and filters by EmailLike (a LIKE
//     pattern), From/To (created, unix seconds, inclusive) and, on the
//     bounces list, Bounce ("soft": status 4.x.x, "hard": the others).
//     CountSuppressions counts what it would select without paging.
//   - DeleteAllSuppressions removes every current entry of one list of one
//     account (entries dated after at too) and nothing else; an addition
//     dated later than the removal adds the address back.
package liststest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/suppression"
)

// Store is what the suite tests: the list methods of the API's store.
type Store interface {
	Suppressions(ctx context.Context, account string, q suppression.Query) ([]suppression.Entry, error)
	CountSuppressions(ctx context.Context, account string, q suppression.Query) (uint64, error)
	WriteSuppressions(ctx context.Context, account string, changes []suppression.Change) error
	DeleteAllSuppressions(ctx context.Context, account, list string, group int64, at time.Time) error
}

// Run runs the suite; newStore returns a store for each test. Accounts are
// unique to the test, so one database may back them all.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s Store, account string)
	}{
		{"NewestChangeWins", newestChangeWins},
		{"Isolation", isolation},
		{"OrderAndPaging", orderAndPaging},
		{"Filters", filters},
		{"DeleteAll", deleteAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newStore(t), fmt.Sprintf("lt%s%d", tc.name, time.Now().UnixNano()%1e9))
		})
	}
}

var t0 = time.Unix(1764201600, 0).UTC() // 2025-11-27 00:00:00

func add(email string, at time.Time, status string) suppression.Change {
	return suppression.Change{List: "bounces", Email: email, EmailNorm: email, At: at, Reason: "550 no such user", Status: status, Source: suppression.SourceAPI}
}

func remove(email string, at time.Time) suppression.Change {
	return suppression.Change{List: "bounces", Email: email, EmailNorm: email, At: at, Deleted: true, Source: suppression.SourceAPI}
}

func write(t *testing.T, s Store, account string, cs ...suppression.Change) {
	t.Helper()
	if err := s.WriteSuppressions(context.Background(), account, cs); err != nil {
		t.Fatalf("WriteSuppressions: %v", err)
	}
}

// list returns the addresses q selects, in order, and checks the count.
func list(t *testing.T, s Store, account string, q suppression.Query) []string {
	t.Helper()
	es, err := s.Suppressions(context.Background(), account, q)
	if err != nil {
		t.Fatalf("Suppressions(%+v): %v", q, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.EmailNorm
	}
	return out
}

func count(t *testing.T, s Store, account string, q suppression.Query) uint64 {
	t.Helper()
	n, err := s.CountSuppressions(context.Background(), account, q)
	if err != nil {
		t.Fatalf("CountSuppressions(%+v): %v", q, err)
	}
	return n
}

func want(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

var bounces = suppression.Query{List: "bounces"}

func newestChangeWins(t *testing.T, s Store, account string) {
	write(t, s, account,
		add("a@x.org", t0, "5.1.1"),
		add("b@x.org", t0, "5.1.1"), remove("b@x.org", t0.Add(time.Second)), // removed later
		remove("c@x.org", t0), add("c@x.org", t0.Add(time.Second), "5.1.1"), // added back later
		add("d@x.org", t0, "5.1.1"), remove("d@x.org", t0), // a removal wins a tie
	)
	// Arriving out of order changes nothing: the older change loses.
	write(t, s, account, remove("a@x.org", t0.Add(-time.Hour)), add("b@x.org", t0.Add(-time.Hour), "5.1.1"))
	want(t, "current entries", list(t, s, account, bounces), "c@x.org", "a@x.org")
	if n := count(t, s, account, bounces); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
}

func isolation(t *testing.T, s Store, account string) {
	write(t, s, account, add("a@x.org", t0, "5.1.1"))
	block := add("b@x.org", t0, "")
	block.List = "blocks"
	write(t, s, account, block)
	want(t, "bounces", list(t, s, account, bounces), "a@x.org")
	want(t, "blocks", list(t, s, account, suppression.Query{List: "blocks"}), "b@x.org")
	want(t, "another account's bounces", list(t, s, account+"x", bounces))
	want(t, "another group", list(t, s, account, suppression.Query{List: "bounces", GroupID: 7}))
	if n := count(t, s, account+"x", bounces); n != 0 {
		t.Errorf("another account counts %d", n)
	}
}

func orderAndPaging(t *testing.T, s Store, account string) {
	write(t, s, account, add("b@x.org", t0, "5.1.1"), add("a@x.org", t0, "5.1.1"), add("c@x.org", t0.Add(time.Hour), "5.1.1"),
		add("d@x.org", t0.Add(-time.Hour), "5.1.1"))
	want(t, "newest first, then by address", list(t, s, account, bounces), "c@x.org", "a@x.org", "b@x.org", "d@x.org")
	want(t, "offset 1 limit 2", list(t, s, account, suppression.Query{List: "bounces", Offset: 1, Limit: 2}), "a@x.org", "b@x.org")
	if n := count(t, s, account, suppression.Query{List: "bounces", Offset: 1, Limit: 2}); n != 4 {
		t.Errorf("count with paging %d, want 4 (paging aside)", n)
	}
}

func filters(t *testing.T, s Store, account string) {
	write(t, s, account, add("ann@x.org", t0, "5.1.1"), add("bob@y.org", t0.Add(time.Hour), "4.2.2"), add("cat@x.org", t0.Add(2*time.Hour), "5.1.2"))
	from, to := uint32(t0.Add(time.Hour).Unix()), uint32(t0.Add(2*time.Hour).Unix())
	for _, tc := range []struct {
		name string
		q    suppression.Query
		want []string
	}{
		{"like exact", suppression.Query{EmailLike: "ann@x.org"}, []string{"ann@x.org"}},
		{"like domain", suppression.Query{EmailLike: "%@x.org"}, []string{"cat@x.org", "ann@x.org"}},
		{"from", suppression.Query{From: from}, []string{"cat@x.org", "bob@y.org"}},
		{"from to, inclusive", suppression.Query{From: from, To: from}, []string{"bob@y.org"}},
		{"to", suppression.Query{To: to - 1}, []string{"bob@y.org", "ann@x.org"}},
		{"soft", suppression.Query{Bounce: "soft"}, []string{"bob@y.org"}},
		{"hard", suppression.Query{Bounce: "hard"}, []string{"cat@x.org", "ann@x.org"}},
	} {
		tc.q.List = "bounces"
		want(t, tc.name, list(t, s, account, tc.q), tc.want...)
		if n := count(t, s, account, tc.q); n != uint64(len(tc.want)) {
			t.Errorf("%s: count %d, want %d", tc.name, n, len(tc.want))
		}
	}
}

func deleteAll(t *testing.T, s Store, account string) {
	write(t, s, account, add("a@x.org", t0, "5.1.1"), add("later@x.org", t0.Add(time.Hour), "5.1.1"))
	block := add("b@x.org", t0, "")
	block.List = "blocks"
	write(t, s, account, block)
	write(t, s, account+"x", add("a@x.org", t0, "5.1.1"))
	if err := s.DeleteAllSuppressions(context.Background(), account, "bounces", 0, t0.Add(time.Minute)); err != nil {
		t.Fatalf("DeleteAllSuppressions: %v", err)
	}
	want(t, "bounces after delete-all", list(t, s, account, bounces))
	want(t, "blocks after delete-all of bounces", list(t, s, account, suppression.Query{List: "blocks"}), "b@x.org")
	want(t, "another account after delete-all", list(t, s, account+"x", bounces), "a@x.org")
	write(t, s, account, add("a@x.org", t0.Add(2*time.Hour), "5.1.1"))
	want(t, "added back after delete-all", list(t, s, account, bounces), "a@x.org")
}
