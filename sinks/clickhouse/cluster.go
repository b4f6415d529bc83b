package clickhouse

// # On a cluster of replicated shards
//
// With Config.Cluster set, Migrate creates the layout of cluster_ddl.go
// (Replicated* tables, sharded ones behind a Distributed table of the
// original name) and a Store writes as follows.
//
// Events and dead letters of Kafka partition p go as one block straight into
// the local ReplicatedMergeTree table of shard p mod N (N shards, in
// system.clusters order), through whichever replica of that shard accepts
// the connection: never through the Distributed table, whose asynchronous
// mode would acknowledge rows that are only queued on one server's disk.
// A block inserted into one replica is one part, fetched whole by the others,
// so the atomicity the pipeline relies on holds on the shard.
//
// The resume point (HighWater) is the maximum over every replica of the
// shard, each asked directly. This is what makes replica loss safe: an insert
// acknowledged by replica A that A had not yet passed on is still counted
// while A is reachable, and while A is unreachable HighWater fails (the
// partition waits, retrying, and the error names the replica) instead of
// answering from replica B, which would resend A's batches with new
// ingested_at values that block deduplication does not recognise. Running
// partitions keep inserting through the live replica: only a failed insert,
// an assignment or a restart reads the marks. If a connection to a replica
// fails before any data is sent (PrepareBatch), nothing was inserted, and
// the same batch goes to the next replica at once; a failure after the data
// was sent is ambiguous and goes back to the pipeline, which re-reads the
// marks from every replica.
//
// An operator who knows a replica is gone for good lists it in
// Config.LostReplicas: HighWater then skips it. What only that replica held
// is lost from ClickHouse; offsets Kafka still retains above the surviving
// replicas' mark are not re-read (the committed offset is past them), so
// declare a replica lost only when its disk is lost, and count what the
// shard misses (dead_letters and events by partition) afterwards.
//
// Other writes (suppression changes, recipient history, webhooks, keys,
// settings) are idempotent or versioned and go through the Distributed
// tables with insert_distributed_sync = 1 (synchronous: the call returns
// once every shard involved holds its rows) or straight into the tables
// replicated to every server. Reads use the Distributed tables, which have
// the single-server names, so every read query is the single-server query.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// replica is one server of a shard.
type replica struct {
	addr string
	conn driver.Conn
}

// shard is one replica set: per-replica connections for HighWater and the
// failover order for inserts.
type shard struct {
	num      int
	replicas []replica
}

type clusterState struct {
	shards []shard
}

// ErrReplicaUnreachable is wrapped by HighWater on a cluster when a replica
// of the shard cannot answer: the resume point is unknown until it returns
// or is declared lost (Config.LostReplicas).
var ErrReplicaUnreachable = errors.New("clickhouse replica unreachable")

// openCluster reads the cluster's servers from system.clusters and connects
// to each.
func (s *Store) openCluster(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = ? ORDER BY shard_num, replica_num", s.cfg.Cluster)
	if err != nil {
		return fmt.Errorf("read cluster %s from system.clusters: %w", s.cfg.Cluster, err)
	}
	var shards []shard
	for rows.Next() {
		var sh, rp uint32
		var host string
		var port uint16
		if err := rows.Scan(&sh, &rp, &host, &port); err != nil {
			rows.Close()
			return err
		}
		if len(shards) == 0 || shards[len(shards)-1].num != int(sh) {
			shards = append(shards, shard{num: int(sh)})
		}
		addr := fmt.Sprintf("%s:%d", host, port)
		o := s.cfg.options(s.cfg.Database)
		o.Addr = []string{addr}
		o.MaxOpenConns, o.MaxIdleConns = 8, 4
		conn, err := ch.Open(o)
		if err != nil {
			rows.Close()
			return fmt.Errorf("open replica %s: %w", addr, err)
		}
		last := &shards[len(shards)-1]
		last.replicas = append(last.replicas, replica{addr: addr, conn: conn})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	s.cluster = &clusterState{shards: shards}
	if len(shards) == 0 {
		return fmt.Errorf("clickhouse cluster %q is not in system.clusters of %s: check remote_servers, or unset CLICKHOUSE_CLUSTER for a single server", s.cfg.Cluster, strings.Join(s.cfg.Addr, ","))
	}
	return nil
}

func (c *clusterState) close() {
	for _, sh := range c.shards {
		for _, r := range sh.replicas {
			r.conn.Close()
		}
	}
}

// shardOf is the shard that holds Kafka partition p's events and dead
// letters (the same placement as the Distributed tables' kafka_partition
// key with equal weights).
func (c *clusterState) shardOf(partition int) *shard {
	return &c.shards[partition%len(c.shards)]
}

// localSQL points a registered INSERT or high-water query at a sharded
// table's local part.
func localSQL(q Query, table string) string {
	return strings.Replace(q.SQL, " "+table+" ", " "+table+localSuffix+" ", 1)
}

// clusterHighWater is the highest offset of partition held by any replica of
// its shard; it fails while a replica not declared lost is unreachable.
func (s *Store) clusterHighWater(ctx context.Context, q Query, table, topic string, partition int) (int64, error) {
	sh := s.cluster.shardOf(partition)
	sql := localSQL(q, table)
	best := int64(-1)
	for _, r := range sh.replicas {
		if slices.Contains(s.cfg.LostReplicas, r.addr) {
			continue
		}
		var n, hi uint64
		if err := r.conn.QueryRow(ctx, sql, topic, uint32(partition)).Scan(&n, &hi); err != nil {
			return 0, resumeReplicaError(q, sh, r, partition, err)
		}
		if n > 0 && int64(hi) > best {
			best = int64(hi)
		}
	}
	return best, nil
}

// resumeReplicaError says that reading partition's resume point from a
// replica of its shard failed, and what to do about it.
func resumeReplicaError(q Query, sh *shard, r replica, partition int, err error) error {
	return fmt.Errorf("%s on shard %d replica %s: %w: %w (the resume point of partition %d needs every replica of the shard; waiting for it, or list it in CLICKHOUSE_LOST_REPLICAS if its disk is gone)",
		q.Name, sh.num, r.addr, ErrReplicaUnreachable, err, partition)
}

// clusterInsert sends one block into partition's shard: to the first replica
// that accepts the INSERT (a failed PrepareBatch sent no data, so the next
// replica is safe to try), never re-sending after a failed Send.
func (s *Store) clusterInsert(ctx context.Context, q Query, table string, partition int, fill func(b driver.Batch) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	sh := s.cluster.shardOf(partition)
	sql := localSQL(q, table)
	var errs []error
	for _, r := range sh.replicas {
		batch, err := r.conn.PrepareBatch(ctx, sql)
		if err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", r.addr, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := fill(batch); err != nil {
			batch.Abort()
			return fmt.Errorf("%s: %w", q.Name, err)
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("%s on shard %d replica %s: send: %w", q.Name, sh.num, r.addr, err)
		}
		return nil
	}
	return fmt.Errorf("%s: no replica of shard %d accepted the insert: %w", q.Name, sh.num, errors.Join(errs...))
}
