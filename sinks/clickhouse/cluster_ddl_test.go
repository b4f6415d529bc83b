package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-mail/bouncer/schemas/ddl"
)

// clusterDDL is every migration in its cluster form, for cluster "bouncer"
// and database "bouncer".
func clusterDDL(t *testing.T) []checkStatement {
	t.Helper()
	migrations, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var out []checkStatement
	add := func(name, stmt string) {
		stmts, err := clusterStatements(stmt, "bouncer", "bouncer")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, s := range stmts {
			out = append(out, checkStatement{Name: fmt.Sprintf("%s (cluster form %d)", name, i+1), Kind: "ddl", SQL: s})
		}
	}
	add("schema_migrations", qMigrationsCreate.SQL)
	for _, m := range migrations {
		stmts, err := guardSwaps(m.Statements)
		if err != nil {
			t.Fatalf("ddl %04d_%s: %v", m.Version, m.Name, err)
		}
		for i, s := range stmts {
			add(fmt.Sprintf("ddl %04d_%s #%d", m.Version, m.Name, i+1), s)
		}
	}
	return out
}

// Every table has a cluster form: sharded tables a Replicated local table
// under /clickhouse/tables/{shard} and a Distributed table of the original
// name; control tables one replica set over all servers.
func TestClusterStatements(t *testing.T) {
	stmts := clusterDDL(t)
	seen := map[string]bool{}
	for _, s := range stmts {
		// The one statement without ON CLUSTER: the ADD COLUMN of a
		// Distributed table, which Migrate runs on every server.
		// And the ADD COLUMN of a replicated table, run on one replica of
		// each replica set.
		distributedAlter := strings.HasPrefix(s.SQL, "ALTER TABLE bouncer.") && !strings.Contains(s.SQL, "_local ") && strings.Contains(s.SQL, " ADD COLUMN ")
		replicatedAlter := strings.HasPrefix(s.SQL, oncePerReplicaSet+"ALTER TABLE bouncer.") && strings.Contains(s.SQL, " ADD COLUMN ")
		// A table rebuild's statements (migrate_move.go) run on every
		// server or once per replica set, too.
		swap := swapGuard.MatchString(s.SQL)
		move := strings.HasPrefix(s.SQL, oncePerReplicaSet+"INSERT INTO bouncer.")
		drop := strings.HasPrefix(s.SQL, "DROP TABLE IF EXISTS bouncer.")
		s.SQL = strings.TrimPrefix(s.SQL, oncePerReplicaSet)
		if !strings.Contains(s.SQL, " ON CLUSTER bouncer ") && !distributedAlter && !replicatedAlter && !swap && !move && !drop {
			t.Errorf("%s: no ON CLUSTER: %s", s.Name, s.SQL)
		}
		switch {
		case swap:
			seen["swap"] = true
			if g, _, _ := parseGuard(s.SQL); !strings.HasSuffix(g.old, "_local") || !strings.HasSuffix(g.table, "_local") || strings.Contains(s.SQL, " ON CLUSTER ") {
				t.Errorf("%s: a swap of a sharded table runs on each server's local tables, guarded by a local table: %s", s.Name, s.SQL)
			}
		case move, drop:
			seen["rebuild"] = true
		case strings.HasPrefix(s.SQL, "ALTER TABLE bouncer.") && strings.Contains(s.SQL, " ADD COLUMN "):
			seen["add column"] = true
		case strings.Contains(s.SQL, "ENGINE = Distributed("):
			seen["distributed"] = true
		case strings.Contains(s.SQL, "'/clickhouse/tables/{shard}/bouncer/"):
			seen["sharded"] = true
			if !strings.Contains(s.SQL, "_local ON CLUSTER") || !strings.Contains(s.SQL, "'{replica}'") {
				t.Errorf("%s: sharded table must be <name>_local with replica {replica}: %s", s.Name, s.SQL)
			}
		case strings.Contains(s.SQL, "'/clickhouse/tables/all/bouncer/"):
			seen["everywhere"] = true
			if !strings.Contains(s.SQL, "'{shard}-{replica}'") {
				t.Errorf("%s: a table on every server needs replica names unique over the cluster: %s", s.Name, s.SQL)
			}
		default:
			t.Errorf("%s: unexpected form: %s", s.Name, s.SQL)
		}
	}
	for _, k := range []string{"distributed", "sharded", "everywhere", "swap", "rebuild"} {
		if !seen[k] {
			t.Errorf("no %s table", k)
		}
	}
	for table, want := range map[string]string{
		"suppressions":      "cityHash64(account_id, email_norm)",
		"recipient_history": "cityHash64(account_id, email_norm)",
		"webhooks":          "cityHash64(account_id, id)",
		"events":            "kafka_partition",
	} {
		found := false
		for _, s := range stmts {
			if strings.HasPrefix(s.SQL, "CREATE TABLE IF NOT EXISTS bouncer."+table+" ON CLUSTER") {
				found = strings.Contains(s.SQL, "Distributed(bouncer, bouncer, "+table+"_local, "+want+")")
			}
		}
		if !found {
			t.Errorf("%s: not a Distributed table sharded by %s", table, want)
		}
	}
	// A column is added to a sharded table's local tables and to the
	// Distributed table over them, and to a control table once.
	got, err := clusterStatements("ALTER TABLE webhooks ADD COLUMN x String", "bouncer", "bouncer")
	if want := []string{oncePerReplicaSet + "ALTER TABLE bouncer.webhooks_local ADD COLUMN x String",
		"ALTER TABLE bouncer.webhooks ADD COLUMN x String"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ADD COLUMN on a sharded table: %q, %v; want %q", got, err, want)
	}
	got, err = clusterStatements("ALTER TABLE api_keys ADD COLUMN x String", "bouncer", "bouncer")
	if want := []string{oncePerReplicaSet + "ALTER TABLE bouncer.api_keys ADD COLUMN x String"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ADD COLUMN on a control table: %q, %v; want %q", got, err, want)
	}
	for _, stmt := range got {
		if m := addColumnTarget.FindStringSubmatch(strings.TrimPrefix(stmt, oncePerReplicaSet)); m == nil || m[1] != "bouncer" || m[2] != "api_keys" || m[3] != "x" {
			t.Errorf("addColumnTarget(%q) = %q", stmt, m)
		}
	}
	// recipient_history's rebuild (0021, 0022): the new local table is
	// created and swapped in on every server where the old one was not
	// swapped out yet; the rows move from local table to local table (on
	// their shard); the old table's Distributed table (none) and local
	// tables are dropped on every server.
	rebuild := map[string]string{}
	for _, s := range stmts {
		if strings.Contains(s.Name, "recipient_history_swap") || strings.Contains(s.Name, "recipient_history_move") {
			rebuild[s.Name] = s.SQL
		}
	}
	for name, want := range map[string]string{
		"ddl 0021_recipient_history_swap #1 (cluster form 1)": "/* unless exists bouncer.recipient_history_g8192_local or bouncer.recipient_history_local has index_granularity = 256 */ CREATE TABLE IF NOT EXISTS bouncer.recipient_history_g256_local (",
		"ddl 0021_recipient_history_swap #2 (cluster form 1)": "/* unless exists bouncer.recipient_history_g8192_local or bouncer.recipient_history_local has index_granularity = 256 */ RENAME TABLE bouncer.recipient_history_local TO bouncer.recipient_history_g8192_local, bouncer.recipient_history_g256_local TO bouncer.recipient_history_local",
		"ddl 0022_recipient_history_move #1 (cluster form 1)": oncePerReplicaSet + "INSERT INTO bouncer.recipient_history_local (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type) SELECT ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type FROM bouncer.recipient_history_g8192_local",
		"ddl 0022_recipient_history_move #2 (cluster form 1)": "DROP TABLE IF EXISTS bouncer.recipient_history_g8192",
		"ddl 0022_recipient_history_move #2 (cluster form 2)": "DROP TABLE IF EXISTS bouncer.recipient_history_g8192_local",
		"ddl 0022_recipient_history_move #3 (cluster form 1)": "DROP TABLE IF EXISTS bouncer.recipient_history_g256",
		"ddl 0022_recipient_history_move #3 (cluster form 2)": "DROP TABLE IF EXISTS bouncer.recipient_history_g256_local",
	} {
		if got := rebuild[name]; !strings.HasPrefix(got, want) {
			t.Errorf("%s:\n%s\nwant it to start\n%s", name, got, want)
		}
	}
	if got := rebuild["ddl 0021_recipient_history_swap #1 (cluster form 1)"]; !strings.Contains(got, "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/bouncer/recipient_history_g256_local', '{replica}') PARTITION BY") ||
		!strings.HasSuffix(got, "SETTINGS index_granularity = 256") {
		t.Errorf("0021's new table on the cluster: %s", got)
	}
	if len(rebuild) != 7 {
		t.Errorf("the rebuild has %d cluster statements, want 7: %q", len(rebuild), rebuild)
	}
	// Statements without a cluster form are refused, not passed through.
	if _, err := clusterStatements("ALTER TABLE events DROP COLUMN x", "bouncer", "bouncer"); err == nil {
		t.Error("ALTER DROP accepted without a cluster form")
	}
	if _, err := clusterStatements("CREATE TABLE IF NOT EXISTS unknown (a UInt8) ENGINE = MergeTree ORDER BY a", "bouncer", "bouncer"); err == nil {
		t.Error("a table without a cluster layout accepted")
	}
}

// chdb has no ZooKeeper and no cluster, so it cannot create Replicated or
// Distributed tables; it parses them: formatQuery fails on a syntax error.
// The real run is on ClickHouse 18.16 (test/cluster).
func TestClusterStatementsParseOnCurrentClickHouse(t *testing.T) {
	var stmts []checkStatement
	for _, s := range clusterDDL(t) {
		stmts = append(stmts, checkStatement{Name: s.Name, Kind: "query",
			SQL: "SELECT formatQuery('" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s.SQL) + "')"})
	}
	runChdbCheck(t, context.Background(), stmts)
}
