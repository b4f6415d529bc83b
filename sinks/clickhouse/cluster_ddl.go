package clickhouse

import (
	"fmt"
	"regexp"
	"strings"
)

// tableLayout says how one table of the single-server schema is laid out on
// a cluster of replicated shards.
type tableLayout struct {
	// shardKey, when set, makes the table sharded: a Replicated* table
	// <name>_local on every server (one replica set per shard) and a
	// Distributed table <name> over it with this sharding key. Tables read
	// with FINAL or argMax are sharded by their row key so one shard holds
	// every version of a row and FINAL, run per shard, sees them all.
	// When empty, the table is small control data replicated to every
	// server: one Replicated* table <name>, one replica set for the cluster.
	shardKey string
}

// clusterLayout covers every table the migrations create; a new table must be
// added here (clusterStatements refuses an unknown one).
var clusterLayout = map[string]tableLayout{
	// The exactly-once tables: written directly into one shard's local table
	// chosen from the Kafka partition (shardOf), never through the
	// Distributed table. The key states the same placement.
	"events":       {shardKey: "kafka_partition"},
	"dead_letters": {shardKey: "kafka_partition"},
	// Written before the events of a batch, into the same shard.
	"stats_marks":   {shardKey: "kafka_partition"},
	"message_index": {shardKey: "kafka_partition"},
	// Rollups: one build of an account's day is one insert through the
	// Distributed table, all on the account's shard (one part).
	"stats_daily": {shardKey: "cityHash64(account_id)"},
	// Written by the same builds, one insert per chunk, read per account.
	"activity_windows": {shardKey: "cityHash64(account_id)"},
	// Read with FINAL / argMax per (account, list, group, address) and per
	// recipient: all lists of one address on one shard.
	"suppressions":      {shardKey: "cityHash64(account_id, email_norm)"},
	"recipient_history": {shardKey: "cityHash64(account_id, email_norm)"},
	// The tables of recipient_history's rebuild (0021, 0022): the same
	// layout, so the rows stay on their shard.
	"recipient_history_g256":  {shardKey: "cityHash64(account_id, email_norm)"},
	"recipient_history_g8192": {shardKey: "cityHash64(account_id, email_norm)"},
	// Subscriptions, read with FINAL per (account_id, id).
	"webhooks":               {shardKey: "cityHash64(account_id, id)"},
	"webhook_deliveries":     {shardKey: "cityHash64(account_id, endpoint_id)"},
	"webhook_failed_batches": {shardKey: "cityHash64(account_id, endpoint_id)"},
	// Security policies, read newest-version-first per (account_id, id).
	"webhook_security_policies": {shardKey: "cityHash64(account_id, id)"},
	// Small control tables: on every server.
	"api_keys":              {},
	"forwarding_settings":   {},
	"erasures":              {},
	"dashboard_sessions":    {},
	"unsubscribe_groups":    {},
	"bounce_purge_settings": {},
	"schema_migrations":     {},
	// Activity CSV downloads: small state, and the files until they
	// expire (every server holds them all).
	"activity_downloads":      {},
	"activity_download_parts": {},
}

// localSuffix names a sharded table's per-server part.
const localSuffix = "_local"

// oncePerReplicaSet starts a cluster statement that Migrate runs on one
// replica of each replica set (each shard for a <name>_local table, the
// whole cluster for a table on every server), then waits until every
// server has its result: an ADD COLUMN of a replicated table.
const oncePerReplicaSet = "/* once per replica set */ "

// addColumn is the one ALTER the migrations may use: ALTER TABLE t ADD
// COLUMN c type, on the table of the single-server schema. Its target is
// read back by addColumnTarget (with a database and ON CLUSTER too).
var (
	addColumn       = regexp.MustCompile(`(?s)^ALTER TABLE ([A-Za-z_][A-Za-z0-9_]*) ADD COLUMN ([A-Za-z_][A-Za-z0-9_]*) (.+)$`)
	addColumnTarget = regexp.MustCompile(`(?s)^ALTER TABLE (?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)(?: ON CLUSTER [A-Za-z_][A-Za-z0-9_]*)? ADD COLUMN ([A-Za-z_][A-Za-z0-9_]*) `)
)

var createTable = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS ([A-Za-z_][A-Za-z0-9_]*) \((.*)\)\s*ENGINE = ([A-Za-z]*MergeTree)(?:\(([^()]*)\))?\s*(.*)$`)

// clusterStatements rewrites one statement of the single-server schema for
// the cluster named cluster, database db: Replicated* engines with ZooKeeper
// paths under /clickhouse/tables/{shard} (sharded) or /clickhouse/tables/all
// (on every server), ON CLUSTER, and a Distributed table under the
// original name for sharded tables, so every read query works unchanged.
// Only CREATE TABLE IF NOT EXISTS of a *MergeTree engine and ALTER TABLE ...
// ADD COLUMN are understood (a column is added to the local table ON
// CLUSTER and to the Distributed table over it on each server: a statement
// without ON CLUSTER, which Migrate runs on every server), and the
// statements of a table rebuild (migrate_move.go): the swap's CREATE and
// RENAME and a DROP TABLE IF EXISTS run on every server directly, on the
// tables that hold the rows, the move once per replica set; any
// other statement is an error that names it,
// so a future migration cannot silently do something different on a cluster.
func clusterStatements(stmt, db, cluster string) ([]string, error) {
	stmt = strings.TrimSpace(stmt)
	if g, body, ok := parseGuard(stmt); ok {
		return swapStatements(g, body, db)
	}
	if m := insertSelect.FindStringSubmatch(stmt); m != nil {
		target, err := clusterTable(m[1], db)
		if err != nil {
			return nil, err
		}
		src, err := clusterTable(m[4], db)
		if err != nil {
			return nil, err
		}
		return []string{oncePerReplicaSet + fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", target, m[2], m[3], src)}, nil
	}
	if m := dropTable.FindStringSubmatch(stmt); m != nil {
		layout, ok := clusterLayout[m[1]]
		if !ok {
			return nil, fmt.Errorf("table %s has no cluster layout: add it to clusterLayout in sinks/clickhouse/cluster_ddl.go", m[1])
		}
		// On every server directly, like the swap: each replica leaves
		// ZooKeeper as it drops its table.
		out := []string{fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", db, m[1])}
		if layout.shardKey != "" {
			out = append(out, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s", db, m[1]+localSuffix))
		}
		return out, nil
	}
	if a := addColumn.FindStringSubmatch(strings.TrimSpace(stmt)); a != nil {
		name, rest := a[1], a[2]+" "+a[3]
		layout, ok := clusterLayout[name]
		if !ok {
			return nil, fmt.Errorf("table %s has no cluster layout: add it to clusterLayout in sinks/clickhouse/cluster_ddl.go", name)
		}
		// The replicated table is altered on one replica of each replica
		// set, and the ALTER replicates to the others through ZooKeeper.
		// Not ON CLUSTER: 18.16's distributed DDL runs an ALTER of a
		// replicated table on one replica per shard, and when the change
		// reaches the other replica first, that replica fails with "column
		// already exists", then with "Node exists" on the shard's
		// executed node, and the task never finishes for it: the migration
		// waited distributed_ddl_task_timeout (180 s) per column, again
		// and again.
		if layout.shardKey == "" {
			return []string{oncePerReplicaSet + fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, name, rest)}, nil
		}
		// The Distributed table is not replicated, and 18.16's distributed
		// DDL refuses an ALTER of it ON CLUSTER when the shards replicate
		// internally (code 371): it is altered on every server directly
		// (a statement without ON CLUSTER, see Migrate).
		return []string{
			oncePerReplicaSet + fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, name+localSuffix, rest),
			fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", db, name, rest),
		}, nil
	}
	if !createTable.MatchString(stmt) {
		return nil, fmt.Errorf("statement has no cluster form (only CREATE TABLE IF NOT EXISTS ... ENGINE = *MergeTree, ALTER TABLE ... ADD COLUMN and a table rebuild's statements are understood; extend clusterStatements): %.80s", stmt)
	}
	name, create, err := replicatedCreate(stmt, db, " ON CLUSTER "+cluster)
	if err != nil {
		return nil, err
	}
	layout := clusterLayout[name]
	if layout.shardKey == "" {
		// One replica set over the whole cluster: every server holds it all.
		return []string{create}, nil
	}
	local := name + localSuffix
	return []string{
		create,
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s AS %s.%s ENGINE = Distributed(%s, %s, %s, %s)",
			db, name, cluster, db, local, cluster, db, local, layout.shardKey),
	}, nil
}

// clusterTable is the table of the cluster that holds name's rows on each
// server: DB.<name>_local for a sharded table, DB.<name> for one on every
// server.
func clusterTable(name, db string) (string, error) {
	layout, ok := clusterLayout[name]
	if !ok {
		return "", fmt.Errorf("table %s has no cluster layout: add it to clusterLayout in sinks/clickhouse/cluster_ddl.go", name)
	}
	if layout.shardKey != "" {
		return db + "." + name + localSuffix, nil
	}
	return db + "." + name, nil
}

// swapStatements is the cluster form of a statement of a table swap
// (migrate_move.go) with guard g: run on every server directly (not ON
// CLUSTER), each skipping it where the swap was made, and on the
// tables that hold the rows (clusterTable). The new table gets no
// Distributed table: the one of the name it takes over reads it once it is
// renamed.
func swapStatements(g swapCheck, stmt, db string) ([]string, error) {
	var err error
	if g.old, err = clusterTable(g.old, db); err != nil {
		return nil, err
	}
	if g.table, err = clusterTable(g.table, db); err != nil {
		return nil, err
	}
	if r := renameSwap.FindStringSubmatch(stmt); r != nil {
		var names [4]string
		for i := range names {
			if names[i], err = clusterTable(r[i+1], db); err != nil {
				return nil, err
			}
		}
		return []string{g.mark(fmt.Sprintf("RENAME TABLE %s TO %s, %s TO %s", names[0], names[1], names[2], names[3]))}, nil
	}
	if !createTable.MatchString(stmt) {
		return nil, fmt.Errorf("a guarded statement must be a table swap's CREATE TABLE IF NOT EXISTS or RENAME TABLE: %.80s", stmt)
	}
	_, create, err := replicatedCreate(stmt, db, "")
	if err != nil {
		return nil, err
	}
	return []string{g.mark(create)}, nil
}

// replicatedCreate is a CREATE TABLE IF NOT EXISTS of the single-server
// schema made Replicated, for the table that holds the rows on each server
// (clusterTable), with onCluster (" ON CLUSTER NAME" or "") after its name.
func replicatedCreate(stmt, db, onCluster string) (name, create string, err error) {
	m := createTable.FindStringSubmatch(stmt)
	name, columns, engine, params, rest := m[1], m[2], m[3], m[4], m[5]
	table, err := clusterTable(name, db)
	if err != nil {
		return "", "", err
	}
	return name, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s (%s) ENGINE = %s %s",
		table, onCluster, columns, replicatedEngine(name, db, engine, params), rest), nil
}

// replicatedEngine is the Replicated* engine of table name (engine with
// params on one server): ZooKeeper path /clickhouse/tables/{shard}/DB/<name>_local
// and replica {replica} for a sharded table, /clickhouse/tables/all/DB/<name>
// and {shard}-{replica} (unique over the cluster) for one on every server.
func replicatedEngine(name, db, engine, params string) string {
	args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s%s', '{replica}'", db, name, localSuffix)
	if clusterLayout[name].shardKey == "" {
		args = fmt.Sprintf("'/clickhouse/tables/all/%s/%s', '{shard}-{replica}'", db, name)
	}
	if params != "" {
		args += ", " + params
	}
	return fmt.Sprintf("Replicated%s(%s)", engine, args)
}
