package clickhouse

// # Writes still running on the server
//
// A worker that gives up an insert (its partition was revoked, the insert
// timed out) cancels it on its side, but a server that already holds the
// block keeps writing it: the rows appear after the client stopped
// waiting. If the partition's resume point is read in that window (by the
// next owner, or by this worker before a retry), the batch is sent again
// and stored twice (TestCluster's broker scenario: a rebalance abandoned a
// batch of 834 events, the new owner read the partition's marks before the
// server finished the abandoned insert and wrote them again).
//
// So every events and dead_letters insert carries a query_id naming the
// (topic, partition)s of its rows, and HighWater first waits until no such
// insert of the partition runs on the servers that take the partition's
// rows (system.processes lists a query until it has finished, committed or
// not; the INSERT is listed before any row is sent). A write whose worker
// is gone (kill -9) is waited for the same way.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const writeQueryPrefix = "bouncer-write:"

// writePatience bounds one wait for running writes: past it HighWater
// fails (the caller retries, and readiness says which write it waits for).
const writePatience = time.Minute

var qRunningWrites = register(Query{Name: "processes.running_writes",
	SQL:    "SELECT query_id FROM system.processes WHERE substring(query_id, 1, ?) = ? AND position(query_id, ?) > 0",
	Sample: []any{uint32(len(writeQueryPrefix)), writeQueryPrefix, ",email-events/0,"}})

// partitionTag is how a query_id names one (topic, partition); Kafka topic
// names hold no ',' or '/'.
func partitionTag(topic string, partition int) string {
	return fmt.Sprintf(",%s/%d,", topic, partition)
}

// withWriteID returns ctx with a query_id for an insert into table of rows
// of the given (topic, partition)s.
func withWriteID(ctx context.Context, table string, topics []string, partitions []int) context.Context {
	tags := make([]string, 0, len(topics))
	for i := range topics {
		tags = append(tags, fmt.Sprintf("%s/%d", topics[i], partitions[i]))
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	var r [8]byte
	rand.Read(r[:])
	id := writeQueryPrefix + table + ":," + strings.Join(tags, ",") + ",:" + hex.EncodeToString(r[:])
	return ch.Context(ctx, ch.WithQueryID(id))
}

// waitWrites waits until no events or dead_letters insert of topic's
// partition runs on the servers that take its rows.
func (s *Store) waitWrites(ctx context.Context, topic string, partition int) error {
	// The servers to ask, and what a failure to ask one means.
	type server struct {
		addr string
		conn driver.Conn
		fail func(error) error
	}
	var servers []server
	if s.cluster != nil {
		sh := s.cluster.shardOf(partition)
		for _, r := range sh.replicas {
			if !slices.Contains(s.cfg.LostReplicas, r.addr) {
				servers = append(servers, server{r.addr, r.conn, func(err error) error {
					return resumeReplicaError(qRunningWrites, sh, r, partition, err)
				}})
			}
		}
	} else {
		servers = []server{{strings.Join(s.cfg.Addr, ","), s.conn, func(err error) error { return err }}}
	}
	tag := partitionTag(topic, partition)
	deadline := time.Now().Add(writePatience)
	for {
		var running []string
		for _, sv := range servers {
			var ids []string
			if err := collect(ctx, sv.conn, qRunningWrites, &ids, uint32(len(writeQueryPrefix)), writeQueryPrefix, tag); err != nil {
				return sv.fail(err)
			}
			for _, id := range ids {
				running = append(running, sv.addr+" "+id)
			}
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("an earlier insert of %s/%d still runs after %s (%s): its rows must land or fail before the partition's resume point is read",
				topic, partition, writePatience, strings.Join(running, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
