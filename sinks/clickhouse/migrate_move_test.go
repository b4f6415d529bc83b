package clickhouse

import (
	"slices"
	"testing"
)

// A swap's RENAME and the CREATE of the table it swaps in are guarded by
// the table it swaps out; other statements are left alone, and a RENAME
// that is not a swap of a table the migration creates is refused.
func TestGuardSwaps(t *testing.T) {
	create := "CREATE TABLE IF NOT EXISTS t_new (a UInt8) ENGINE = MergeTree ORDER BY a SETTINGS index_granularity = 256"
	rename := "RENAME TABLE t TO t_old, t_new TO t"
	got, err := guardSwaps([]string{create, rename, "DROP TABLE IF EXISTS x"})
	mark := "/* unless exists t_old or t has index_granularity = 256 */ "
	want := []string{mark + create, mark + rename, "DROP TABLE IF EXISTS x"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("guardSwaps = %q, %v; want %q", got, err, want)
	}
	if g, body, ok := parseGuard(got[1]); !ok || g != (swapCheck{"t_old", "t", "index_granularity = 256"}) || body != rename {
		t.Errorf("parseGuard(%q) = %+v, %q, %v", got[1], g, body, ok)
	}
	for name, stmts := range map[string][]string{
		"not a swap": {create, "RENAME TABLE t TO t_old, t_new TO u"},
		"swaps in a table the migration does not create": {rename},
		"the new table has no SETTINGS":                  {"CREATE TABLE IF NOT EXISTS t_new (a UInt8) ENGINE = MergeTree ORDER BY a", rename},
	} {
		if _, err := guardSwaps(stmts); err == nil {
			t.Errorf("%s: accepted %q", name, stmts)
		}
	}
}
