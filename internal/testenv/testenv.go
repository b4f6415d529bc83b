// Package testenv connects integration tests to the real Kafka and ClickHouse servers.
//
// The servers are found through two environment variables, the ones `scripts/services up`
// prints (and `scripts/services env` re-prints):
//
//	KAFKA_BROKERS=127.0.0.1:PORT[,HOST:PORT...]   Apache Kafka bootstrap brokers
//	CLICKHOUSE_ADDR=127.0.0.1:PORT                ClickHouse native TCP port (not HTTP)
//
// So, from the repository root:
//
//	eval "$(scripts/services up)"   # installs what is missing, starts both, prints the exports
//	go test ./...
//
// or simply `make test`. Pointing the variables at any other Kafka 4.x / ClickHouse pair works too.
//
// Kafka and ClickHouse check that the service answers (a metadata request, a ping; short
// timeouts). When a variable is unset or the service does not answer, the test is skipped with
// a message saying how to start the services, except when the environment has CI=true: there a
// missing service is a failure (t.Fatal), so CI can never go green by skipping everything.
//
// Topic and Database give each test its own uniquely named Kafka topic or ClickHouse database,
// removed again (best effort) in t.Cleanup, so tests can run in parallel and against a shared
// long-running instance.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
)

// Environment variable names, as printed by scripts/services.
const (
	EnvKafka      = "KAFKA_BROKERS"
	EnvClickHouse = "CLICKHOUSE_ADDR"
)

// checkTimeout bounds each reachability check.
const checkTimeout = 5 * time.Second

// Kafka returns the bootstrap broker list from KAFKA_BROKERS (comma separated, as given) after
// checking that the first reachable broker answers a metadata request. Unset or unreachable:
// t.Fatal when CI=true, t.Skip otherwise.
func Kafka(t testing.TB) string {
	t.Helper()
	brokers := strings.TrimSpace(os.Getenv(EnvKafka))
	if brokers == "" {
		unavailable(t, EnvKafka+" is not set")
	}
	var errs []string
	for _, addr := range Brokers(brokers) {
		if err := pingKafka(addr); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return brokers
	}
	unavailable(t, fmt.Sprintf("Kafka at %s=%s does not answer: %s", EnvKafka, brokers, strings.Join(errs, "; ")))
	return ""
}

// ClickHouse returns CLICKHOUSE_ADDR (host:port of the native TCP protocol) after checking that
// the server answers a ping. Unset or unreachable: t.Fatal when CI=true, t.Skip otherwise.
func ClickHouse(t testing.TB) string {
	t.Helper()
	addr := strings.TrimSpace(os.Getenv(EnvClickHouse))
	if addr == "" {
		unavailable(t, EnvClickHouse+" is not set")
	}
	if err := pingClickHouse(addr); err != nil {
		unavailable(t, fmt.Sprintf("ClickHouse at %s=%s does not answer: %v", EnvClickHouse, addr, err))
	}
	return addr
}

// Brokers splits a comma-separated broker list, dropping empty entries.
func Brokers(list string) []string {
	var out []string
	for _, b := range strings.Split(list, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Topic creates a topic with a unique name derived from the test name and the given number of
// partitions (replication factor 1), waits until every partition has a leader, and deletes it
// in t.Cleanup (best effort). brokers is a KAFKA_BROKERS-style list.
func Topic(t testing.TB, brokers string, partitions int) string {
	t.Helper()
	name := uniqueName(t, "test.", '.', 200)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ctrl, err := dialController(ctx, brokers)
	if err != nil {
		t.Fatalf("testenv.Topic: %v", err)
	}
	defer ctrl.Close()
	_ = ctrl.SetDeadline(time.Now().Add(15 * time.Second))
	err = ctrl.CreateTopics(kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1})
	if err != nil {
		t.Fatalf("testenv.Topic: create %s with %d partitions: %v", name, partitions, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := dialController(ctx, brokers)
		if err != nil {
			t.Logf("testenv.Topic: cleanup of %s: %v", name, err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.DeleteTopics(name); err != nil {
			t.Logf("testenv.Topic: delete %s: %v", name, err)
		}
	})

	// Metadata propagates asynchronously: wait until all partitions have a leader.
	var last string
	for ctx.Err() == nil {
		ps, err := readPartitions(ctx, brokers, name)
		led := 0
		for _, p := range ps {
			if p.Leader.Port != 0 {
				led++
			}
		}
		if err == nil && len(ps) == partitions && led == partitions {
			// The metadata cache can list a leader a moment before the leader's replica manager
			// has created the partition (produce then fails with UNKNOWN_TOPIC_OR_PARTITION), so
			// also ask each leader for the partition's end offset.
			if err = leadersReady(ctx, ps); err == nil {
				return name
			}
		}
		last = fmt.Sprintf("%d partitions, %d with leader, err=%v", len(ps), led, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv.Topic: %s not ready after 30s: %s", name, last)
	return ""
}

// Database creates a ClickHouse database with a unique name derived from the test name, drops it
// in t.Cleanup, and returns its name. addr is a CLICKHOUSE_ADDR-style host:port.
func Database(t testing.TB, addr string) string {
	t.Helper()
	name := uniqueName(t, "test_", '_', 120)
	conn := Open(t, addr, "default")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		t.Fatalf("testenv.Database: create %s: %v", name, err)
	}
	t.Cleanup(func() {
		c, err := clickhouse.Open(options(addr, "default"))
		if err != nil {
			t.Logf("testenv.Database: cleanup of %s: %v", name, err)
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Exec(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Logf("testenv.Database: drop %s: %v", name, err)
		}
	})
	return name
}

// Open opens a clickhouse-go (native protocol) connection to addr with database as the default
// database, closed in t.Cleanup.
func Open(t testing.TB, addr, database string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(options(addr, database))
	if err != nil {
		t.Fatalf("testenv.Open %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func options(addr, database string) *clickhouse.Options {
	return &clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: database, Username: "default"},
		DialTimeout: checkTimeout,
	}
}

// Program returns the path of an installed program that tests run (such as
// Debian's promtool and prometheus, which `scripts/services install` puts
// on the machine). Missing: t.Fatal when CI=true, t.Skip otherwise.
func Program(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := name + " is not installed: run 'scripts/services install' (or 'make test', which installs it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	msg := why + `: start the local services with 'eval "$(scripts/services up)"' (or run 'make test'), ` +
		"or point " + EnvKafka + " / " + EnvClickHouse + " at running servers"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func pingKafka(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	d := &kafka.Dialer{Timeout: checkTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(checkTimeout))
	_, err = conn.Brokers()
	return err
}

func pingClickHouse(addr string) error {
	// A plain dial first gives a fast, clear error when nothing listens.
	nc, err := net.DialTimeout("tcp", addr, checkTimeout)
	if err != nil {
		return err
	}
	_ = nc.Close()
	conn, err := clickhouse.Open(options(addr, "default"))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
	defer cancel()
	return conn.Ping(ctx)
}

// dialController connects to the cluster's controller (in KRaft mode: the broker that forwards
// admin requests), which is where CreateTopics and DeleteTopics must go.
func dialController(ctx context.Context, brokers string) (*kafka.Conn, error) {
	var lastErr error
	for _, addr := range Brokers(brokers) {
		conn, err := kafka.DialContext(ctx, "tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		ctrl, err := conn.Controller()
		_ = conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		c, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, fmt.Sprint(ctrl.Port)))
		if err != nil {
			lastErr = err
			continue
		}
		return c, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("empty broker list %q", brokers)
	}
	return nil, fmt.Errorf("dial controller via %s: %w", brokers, lastErr)
}

func leadersReady(ctx context.Context, ps []kafka.Partition) error {
	for _, p := range ps {
		addr := net.JoinHostPort(p.Leader.Host, fmt.Sprint(p.Leader.Port))
		conn, err := kafka.DialLeader(ctx, "tcp", addr, p.Topic, p.ID)
		if err != nil {
			return err
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.ReadLastOffset()
		_ = conn.Close()
		if err != nil {
			return fmt.Errorf("partition %d: %w", p.ID, err)
		}
	}
	return nil
}

func readPartitions(ctx context.Context, brokers, topic string) ([]kafka.Partition, error) {
	var lastErr error
	for _, addr := range Brokers(brokers) {
		conn, err := kafka.DialContext(ctx, "tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		ps, err := conn.ReadPartitions(topic)
		_ = conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return ps, nil
	}
	return nil, lastErr
}

// uniqueName builds prefix + sanitized test name + sep + random hex, at most max bytes, using only
// characters valid in both Kafka topic names and unquoted ClickHouse identifiers.
func uniqueName(t testing.TB, prefix string, sep byte, max int) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	suffix := string(sep) + hex.EncodeToString(b[:])
	var sb strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			sb.WriteRune(r)
		default:
			sb.WriteByte('_')
		}
	}
	base := sb.String()
	if room := max - len(prefix) - len(suffix); len(base) > room {
		base = base[:room]
	}
	return prefix + base + suffix
}
