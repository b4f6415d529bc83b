package pipeline

import (
	"fmt"
	"slices"
	"testing"

	"github.com/bouncer-mail/bouncer/schemas"
)

// TestInsertDrops: each derived drop lands right after its row, the rows
// keep their order, whatever rows have drops.
func TestInsertDrops(t *testing.T) {
	for _, c := range []struct {
		name  string
		rows  int
		after []int
	}{
		{"none", 3, nil},
		{"after the first", 3, []int{0}},
		{"after the last", 3, []int{2}},
		{"after every row", 4, []int{0, 1, 2, 3}},
		{"some", 6, []int{1, 2, 5}},
		{"one row", 1, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows := make([]Row, c.rows, c.rows+1) // room for one drop, not all
			var drops []derivedRow
			var want []string
			for i := range rows {
				rows[i] = Row{Event: schemas.Event{SGEventID: fmt.Sprint("row", i)}}
				want = append(want, rows[i].SGEventID)
				if slices.Contains(c.after, i) {
					d := Row{Event: schemas.Event{SGEventID: fmt.Sprint("drop", i)}, Derived: true}
					drops = append(drops, derivedRow{i, d})
					want = append(want, d.SGEventID)
				}
			}
			var got []string
			for _, r := range insertDrops(rows, drops) {
				got = append(got, r.SGEventID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}
