package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Bench is what `bouncer bench` does on ClickHouse: it sets up the
// contender, ClickHouse's own Kafka engine (a queue table over the topic, a
// MergeTree table with the columns bouncer's events table gets from the
// same fields, and the materialized view between them), counts the rows
// each side holds, and drops the bench databases afterwards. Its
// statements name databases and topics, which cannot be bound as
// arguments, so they are built here rather than registered; the names come
// from the bench itself (bench_bouncer_<time>, bench_peer_<time>).
type Bench struct{ conn driver.Conn }

// OpenBench connects to cfg's server (database "default").
func OpenBench(cfg Config) (*Bench, error) {
	conn, err := ch.Open(&ch.Options{Addr: cfg.Addr, Auth: ch.Auth{Database: "default", Username: cfg.User, Password: cfg.Password},
		DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	return &Bench{conn: conn}, nil
}

// Close closes the connection.
func (b *Bench) Close() error { return b.conn.Close() }

// benchPeerColumns are the peer table's columns: the fields bouncer's
// events table stores, named as SendGrid's JSON names them.
const benchPeerColumns = "event String, email String, timestamp UInt32, sg_event_id String, sg_message_id String, " +
	"`smtp-id` String, category String, type String, reason String, status String, response String, " +
	"attempt String, ip String, tls UInt8, url String, useragent String, asm_group_id Int64, " +
	"from_email String, subject String"

// StartPeer creates database db with the Kafka engine pipeline over topic
// (consumers consumers in group, reading JSONEachRow from the earliest
// offset); the peer starts consuming at once.
func (b *Bench) StartPeer(ctx context.Context, db, brokers, topic, group string, consumers int) error {
	for _, stmt := range []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE " + db + ".events (" + benchPeerColumns + ") ENGINE = MergeTree PARTITION BY toYYYYMM(toDateTime(timestamp)) ORDER BY (event, timestamp)",
		"CREATE TABLE " + db + ".events_queue (" + benchPeerColumns + ") ENGINE = Kafka SETTINGS kafka_broker_list = '" + brokers +
			"', kafka_topic_list = '" + topic + "', kafka_group_name = '" + group + "', kafka_format = 'JSONEachRow', kafka_num_consumers = " + fmt.Sprint(consumers),
		"CREATE MATERIALIZED VIEW " + db + ".events_mv TO " + db + ".events AS SELECT * FROM " + db + ".events_queue",
	} {
		if err := b.conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("peer setup: %w\n%s", err, stmt)
		}
	}
	return nil
}

// StopPeer stops the peer consuming: drops its materialized view, then its
// Kafka table, so its consumers leave the group and use no more CPU.
func (b *Bench) StopPeer(ctx context.Context, db string) error {
	return errors.Join(b.conn.Exec(ctx, "DROP TABLE IF EXISTS "+db+".events_mv"),
		b.conn.Exec(ctx, "DROP TABLE IF EXISTS "+db+".events_queue"))
}

// Drop removes bench databases (a peer's Kafka pipeline first); errors are
// ignored: it cleans up after a run that may have failed half-way.
func (b *Bench) Drop(ctx context.Context, dbs ...string) {
	for _, db := range dbs {
		b.StopPeer(ctx, db)
		b.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
	}
}

// Count is the rows of db's events table, from the active parts' row
// counts (system.parts): 18.16 answers count() by reading the whole table,
// and the bench asks ten times a second, so that cost grew with the table
// and with the contender's run time (1.7 s of ClickHouse CPU in 650,000
// events of a bouncer run at load 40) and was charged to the contender.
// A part's rows appear in system.parts when its insert commits, as in
// count().
func (b *Bench) Count(ctx context.Context, db string) (uint64, error) {
	var n uint64
	err := b.conn.QueryRow(ctx, "SELECT sum(rows) FROM system.parts WHERE database = ? AND table = 'events' AND active", db).Scan(&n)
	return n, err
}

// Merges is how many merges the server is running, so the bench can let
// one contender's merges finish before it measures the next.
func (b *Bench) Merges(ctx context.Context) (uint64, error) {
	var n uint64
	err := b.conn.QueryRow(ctx, "SELECT count() FROM system.merges").Scan(&n)
	return n, err
}

// ServerEvents reads the server's cumulative counters (system.events) of
// inserts, selects, rows and merges, for the bench to report each
// contender's share.
func (b *Bench) ServerEvents(ctx context.Context) (map[string]uint64, error) {
	rows, err := b.conn.Query(ctx, "SELECT event, value FROM system.events WHERE event IN ('InsertQuery', 'SelectQuery', 'InsertedRows', 'MergedRows', 'MergeTreeDataWriterBlocks')")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var name string
		var v uint64
		if err := rows.Scan(&name, &v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}
