package analytics

import (
	"slices"
	"testing"
	"time"
)

func TestStatsPeriods(t *testing.T) {
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	for _, tc := range []struct {
		from, to, by string
		want         []string
	}{
		{"2026-12-30", "2027-01-02", "day", []string{"2026-12-30", "2026-12-31", "2027-01-01"}},
		{"2026-12-30", "2027-01-12", "week", []string{"2026-12-28", "2027-01-04", "2027-01-11"}},
		{"2026-11-01", "2026-11-03", "week", []string{"2026-10-26", "2026-11-02"}}, // 2026-11-01 is a Sunday
		{"2026-11-30", "2027-02-01", "month", []string{"2026-11-01", "2026-12-01", "2027-01-01"}},
	} {
		if got := StatsPeriods(d(tc.from), d(tc.to), tc.by); !slices.Equal(got, tc.want) {
			t.Errorf("%s..%s by %s: %v, want %v", tc.from, tc.to, tc.by, got, tc.want)
		}
	}
}
