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
	want := []string{"/* unless exists t_old */ " + create, "/* unless exists t_old */ " + rename, "DROP TABLE IF EXISTS x"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("guardSwaps = %q, %v; want %q", got, err, want)
	}
	for _, m := range swapGuard.FindAllStringSubmatch(got[1], -1) {
		if m[1] != "t_old" || m[2] != rename {
			t.Errorf("swapGuard reads %q as %q", got[1], m[1:])
		}
	}
	for name, stmts := range map[string][]string{
		"not a swap": {create, "RENAME TABLE t TO t_old, t_new TO u"},
		"swaps in a table the migration does not create": {rename},
	} {
		if _, err := guardSwaps(stmts); err == nil {
			t.Errorf("%s: accepted %q", name, stmts)
		}
	}
}
