//go:build fault

package fault

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// historyRebuild: on the cluster, recipient_history's rebuild (migrations
// 0021 and 0022: 256 rows a granule) keeps every row where it was. A
// database migrated up to 0020 gets 40,000 history rows through the
// Distributed table; after `bouncer migrate` every server's local table
// holds the rows it held before (count and checksum of every column), has
// index_granularity 256, and the old tables are gone from every server; a
// row written afterwards through the Distributed table is read back.
func (ci *clusterInstance) historyRebuild(t *testing.T) {
	// A database of its own each run: an instance left up by a run that
	// timed out keeps the last one's rows.
	db := fmt.Sprintf("cluster_history_%d", time.Now().Unix())
	env := append(os.Environ(), "CLICKHOUSE_ADDR="+ci.clickhouse, "CLICKHOUSE_DATABASE="+db, "CLICKHOUSE_CLUSTER=bouncer")
	migrate := func(args ...string) {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"migrate"}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bouncer migrate %v: %v\n%s", args, err, out)
		}
		t.Logf("bouncer migrate %v: %s", args, strings.TrimSpace(string(out)))
	}
	migrate("--to", "20")
	ctx := ch.Context(context.Background(), ch.WithSettings(ch.Settings{"insert_distributed_sync": 1}))
	c, err := ch.Open(&ch.Options{Addr: ci.addrs, Auth: ch.Auth{Database: db}, DialTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UTC()
	for m := range 2 {
		err := c.Exec(ctx, fmt.Sprintf("INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) "+
			"SELECT toDate('%s'), 'acme', concat('r', toString(number %% 5000), '@example.com'), toDateTime(%d) - number, 'delivered', '', '' FROM system.numbers LIMIT 20000",
			now.AddDate(0, -m, 0).Format("2006-01-02"), now.AddDate(0, -m, 0).Unix()))
		if err != nil {
			t.Fatal(err)
		}
	}
	prints := func(table string) [4]string {
		var out [4]string
		for i, a := range ci.addrs {
			s, err := ch.Open(&ch.Options{Addr: []string{a}, Auth: ch.Auth{Database: db}, DialTimeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var n, sum uint64
			var engine string
			err = s.QueryRow(context.Background(), "SELECT count(), sum(cityHash64(ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type)), "+
				"(SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?) FROM "+table, table).Scan(&n, &sum, &engine)
			s.Close()
			if err != nil {
				t.Fatalf("%s on %s: %v", table, a, err)
			}
			g := "8192"
			if _, v, ok := strings.Cut(engine, "index_granularity = "); ok {
				g = v
			}
			out[i] = fmt.Sprintf("%d rows, checksum %d, granularity %s", n, sum, g)
		}
		return out
	}
	// Both replicas of each shard hold their shard's rows before the rebuild.
	var before [4]string
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		before = prints("recipient_history_local")
		if before[0] == before[1] && before[2] == before[3] && !strings.HasPrefix(before[0], "0 rows") && !strings.HasPrefix(before[2], "0 rows") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas of recipient_history_local never agreed: %q", before)
		}
	}
	t.Logf("before (s1r1 s1r2 s2r1 s2r2): %q", before)
	migrate()
	after := prints("recipient_history_local")
	t.Logf("after: %q", after)
	for i := range before {
		want := strings.Replace(before[i], "granularity 8192", "granularity 256", 1)
		if !strings.Contains(before[i], "granularity 8192") || after[i] != want {
			t.Errorf("server %s: recipient_history_local after the rebuild holds %s, want %s", ci.addrs[i], after[i], want)
		}
	}
	for _, a := range ci.addrs {
		s, err := ch.Open(&ch.Options{Addr: []string{a}, Auth: ch.Auth{Database: db}, DialTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var left uint64
		err = s.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'recipient_history_g%'").Scan(&left)
		s.Close()
		if err != nil || left != 0 {
			t.Errorf("server %s: %d of the rebuild's tables left (%v), want none", a, left, err)
		}
	}
	err = c.Exec(ctx, "INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) "+
		"SELECT today(), 'late', 'kim@example.com', now(), 'delivered', '', ''")
	if err != nil {
		t.Fatal(err)
	}
	var total, late uint64
	if err := c.QueryRow(context.Background(), "SELECT count(), countIf(account_id = 'late') FROM recipient_history").Scan(&total, &late); err != nil || total != 40_001 || late != 1 {
		t.Errorf("through the Distributed table after the rebuild: %d rows, %d late (%v), want 40001 and 1", total, late, err)
	}
}
