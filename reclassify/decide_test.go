package reclassify

import (
	"fmt"
	"testing"

	"github.com/bouncer-mail/bouncer/suppression"
)

// TestDecide covers the list rules one address at a time, without a store.
func TestDecide(t *testing.T) {
	hard := Class{BounceType: "hard", Classification: "Invalid Address", ReasonCode: "user_unknown", Rule: "r"}
	soft := Class{BounceType: "soft", Classification: "Mailbox Unavailable", ReasonCode: "mailbox_full", Rule: "r"}
	id := func(n int64) ID { return ID{Topic: "t", Offset: n} }
	leave := func(n, at int64) Move {
		return Move{Bounce: Bounce{ID: id(n), At: at, SGEventID: fmt.Sprint("e", n)}, From: "bounces", New: soft}
	}
	join := func(n, at int64) Move {
		return Move{Bounce: Bounce{ID: id(n), At: at, List: "bounces", SGEventID: fmt.Sprint("e", n)}, New: hard}
	}
	add := func(at int64, source string) ListRow {
		return ListRow{List: "bounces", Version: uint64(2 * at), Source: source}
	}
	del := func(at int64, source string) ListRow {
		return ListRow{List: "bounces", Version: uint64(2*at + 1), Deleted: true, Source: source}
	}
	for _, tc := range []struct {
		name    string
		moves   []Move
		bounces []Bounce
		rows    []ListRow
		want    string // "" for no change, else "added vN" / "removed vN"
	}{
		{"the only bounce leaves", []Move{leave(1, 100)}, []Bounce{{ID: id(1), At: 100, SGEventID: "e1"}},
			[]ListRow{add(100, "event:e1")}, "removed v201"},
		{"an older bounce keeps it", []Move{leave(1, 100)},
			[]Bounce{{ID: id(1), At: 100, SGEventID: "e1"}, {ID: id(2), At: 50, List: "bounces", SGEventID: "e2"}},
			[]ListRow{add(50, "event:e2"), add(100, "event:e1")}, ""},
		{"an older bounce before a user's delete does not", []Move{leave(1, 100)},
			[]Bounce{{ID: id(1), At: 100, SGEventID: "e1"}, {ID: id(2), At: 50, List: "bounces", SGEventID: "e2"}},
			[]ListRow{add(50, "event:e2"), del(70, "api"), add(100, "event:e1")}, "removed v201"},
		{"an API addition keeps it", []Move{leave(1, 100)}, []Bounce{{ID: id(1), At: 100, SGEventID: "e1"}},
			[]ListRow{add(60, "api"), add(100, "event:e1")}, ""},
		{"a later user delete decides", []Move{leave(1, 100)}, []Bounce{{ID: id(1), At: 100, SGEventID: "e1"}},
			[]ListRow{add(100, "event:e1"), del(150, "api")}, ""},
		{"a bounce no longer stored keeps it", []Move{leave(1, 100)}, []Bounce{{ID: id(1), At: 100, SGEventID: "e1"}},
			[]ListRow{add(40, "event:gone"), add(100, "event:e1")}, ""},
		{"a new hard bounce joins", []Move{join(1, 100)}, []Bounce{{ID: id(1), At: 100, List: "bounces", SGEventID: "e1"}},
			nil, "added v200"},
		{"after an earlier delete", []Move{join(1, 100)}, []Bounce{{ID: id(1), At: 100, List: "bounces", SGEventID: "e1"}},
			[]ListRow{del(90, "api")}, "added v200"},
		{"not before a later delete", []Move{join(1, 100)}, []Bounce{{ID: id(1), At: 100, List: "bounces", SGEventID: "e1"}},
			[]ListRow{del(110, "api")}, ""},
		{"back after an earlier run took it off", []Move{join(1, 100)}, []Bounce{{ID: id(1), At: 100, List: "bounces", SGEventID: "e1"}},
			[]ListRow{add(100, "event:e1"), del(100, suppression.SourceReclassify)}, "added v202"},
		{"repeated after a crash: the same removal", []Move{leave(1, 100)}, []Bounce{{ID: id(1), At: 100, SGEventID: "e1"}},
			[]ListRow{add(100, "event:e1"), del(100, suppression.SourceReclassify)}, "removed v201"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide("acme", "kim@example.org", tc.moves, tc.bounces, tc.rows)
			var s string
			switch {
			case len(got) > 1:
				t.Fatalf("%d changes: %+v", len(got), got)
			case len(got) == 1 && got[0].Deleted:
				s = fmt.Sprintf("removed v%d", got[0].Version())
			case len(got) == 1:
				s = fmt.Sprintf("added v%d", got[0].Version())
			}
			if s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
			if len(got) == 1 && (got[0].List != "bounces" || got[0].AccountID != "acme" || got[0].EmailNorm != "kim@example.org") {
				t.Errorf("change %+v: want acme's bounces entry of kim@example.org", got[0])
			}
		})
	}
}
