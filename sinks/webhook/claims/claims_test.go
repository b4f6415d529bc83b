package claims

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// log numbers claims by their position.
func log(cs ...Claim) []Claim {
	for i := range cs {
		cs[i].Offset = int64(i)
		if cs[i].Version == 0 {
			cs[i].Version = uint64(100 + i)
		}
	}
	return cs
}

func create(id, url string) Claim { return Claim{Op: OpCreate, ID: id, URL: url} }
func move(id, from, to string) Claim {
	return Claim{Op: OpURL, ID: id, OldURL: from, URL: to}
}
func del(id string) Claim { return Claim{Op: OpDelete, ID: id} }

func outcomes(rs map[int64]Result, n int) []string {
	out := make([]string, n)
	for i := range n {
		r := rs[int64(i)]
		out[i] = r.Outcome.String()
		if r.By != "" {
			out[i] += " by " + r.By
		}
	}
	return out
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name     string
		existing []Existing
		log      []Claim
		want     []string
	}{
		{"the first five creates of seven", nil,
			log(create("a", "u1"), create("b", "u2"), create("c", "u3"), create("d", "u4"), create("e", "u5"), create("f", "u6"), create("g", "u7")),
			[]string{"accepted", "accepted", "accepted", "accepted", "accepted", "limit reached", "limit reached"}},
		{"one URL four times", nil,
			log(create("a", "u"), create("b", "u"), create("c", "u"), create("d", "u")),
			[]string{"accepted", "url taken by a", "url taken by a", "url taken by a"}},
		{"a delete frees a slot for later creates only", nil,
			log(create("a", "u1"), create("b", "u2"), create("c", "u3"), create("d", "u4"), create("e", "u5"), create("f", "u6"), del("a"), create("g", "u7"), create("h", "u8")),
			[]string{"accepted", "accepted", "accepted", "accepted", "accepted", "limit reached", "accepted", "accepted", "limit reached"}},
		{"subscriptions from before the log count first", []Existing{{ID: "x", URL: "u1"}, {ID: "y", URL: "u2"}, {ID: "z", URL: "old", Deleted: true}},
			log(create("a", "u1"), create("b", "old"), create("c", "u3"), create("d", "u4"), create("e", "u5")),
			[]string{"url taken by x", "accepted", "accepted", "accepted", "limit reached"}},
		{"an old subscription deleted through the log was live before its delete", []Existing{{ID: "x", URL: "u1", Deleted: true}},
			log(create("a", "u1"), del("x"), create("b", "u1")),
			[]string{"url taken by x", "accepted", "accepted"}},
		{"URL changes", []Existing{{ID: "x", URL: "u9"}},
			log(create("a", "u1"), create("b", "u2"), move("a", "u1", "u2"), move("a", "u1", "u3"), create("c", "u1"), move("gone", "u", "u4"), move("x", "u0", "u1")),
			[]string{"accepted", "accepted", "url taken by b", "accepted", "accepted", "not found", "url taken by c"}},
		{"an old subscription's URL is the one before its first change", []Existing{{ID: "x", URL: "new"}},
			log(create("a", "old"), move("x", "old", "new")),
			[]string{"url taken by x", "accepted"}},
		{"a repeated create gets the first one's answer", nil,
			log(create("a", "u"), create("a", "u"), create("b", "u")),
			[]string{"accepted", "accepted", "url taken by a"}},
		{"claims that a create made are not old subscriptions", []Existing{{ID: "a", URL: "u1"}},
			log(create("a", "u1"), create("b", "u1")),
			[]string{"accepted", "url taken by a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := outcomes(Decide(5, tc.existing, tc.log), len(tc.log))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// Random histories: whatever the interleaving, accepted claims never hold
// more than the limit or two live subscriptions with one URL, and a
// claim's answer depends only on the claims before it (so a process that
// read the log further, later, agrees with the claimer).
func TestDecideProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 150 {
		var cs []Claim
		var ids []string
		for i := range 40 {
			switch k := rng.IntN(10); {
			case k < 6 || len(ids) == 0:
				id := fmt.Sprintf("s%d", i)
				ids = append(ids, id)
				cs = append(cs, create(id, fmt.Sprintf("u%d", rng.IntN(8))))
			case k < 8:
				cs = append(cs, move(ids[rng.IntN(len(ids))], "?", fmt.Sprintf("u%d", rng.IntN(8))))
			default:
				cs = append(cs, del(ids[rng.IntN(len(ids))]))
			}
		}
		cs = log(cs...)
		full := Decide(5, nil, cs)
		live := map[string]string{}
		for _, c := range cs {
			if full[c.Offset].Outcome != Accepted {
				continue
			}
			switch c.Op {
			case OpCreate:
				if _, ok := live[c.ID]; !ok {
					live[c.ID] = c.URL
				}
			case OpURL:
				live[c.ID] = c.URL
			case OpDelete:
				delete(live, c.ID)
			}
			urls := map[string]bool{}
			for _, u := range live {
				if urls[u] {
					t.Fatalf("round %d: two live subscriptions with %s after claim %d", round, u, c.Offset)
				}
				urls[u] = true
			}
			if len(live) > 5 {
				t.Fatalf("round %d: %d live after claim %d", round, len(live), c.Offset)
			}
		}
		for n := range len(cs) {
			prefix := Decide(5, nil, cs[:n+1])
			if prefix[int64(n)] != full[int64(n)] {
				t.Fatalf("round %d: claim %d is %v on its own prefix but %v on the whole log", round, n, prefix[int64(n)], full[int64(n)])
			}
		}
	}
}

func TestRepairs(t *testing.T) {
	cs := log(create("a", "u1"), create("b", "u1"), create("c", "u2"), move("c", "u2", "u3"), del("a"))
	rs := Decide(5, nil, cs)
	// The store has c's create (version 102) and nothing else: a was
	// accepted but not written, b was refused, c's move and a's delete are
	// missing.
	existing := []Existing{{ID: "c", URL: "u2", Version: 102}}
	var got []string
	for _, c := range Repairs(cs, rs, existing) {
		got = append(got, fmt.Sprintf("%s %s", c.Op, c.ID))
	}
	if fmt.Sprint(got) != "[create a url c delete a]" {
		t.Errorf("repairs %v", got)
	}
	// A store that shows everything needs none.
	existing = []Existing{{ID: "a", Deleted: true, Version: 104}, {ID: "c", URL: "u3", Version: 103}}
	if r := Repairs(cs, rs, existing); len(r) != 0 {
		t.Errorf("repairs of a complete store: %v", r)
	}
}
