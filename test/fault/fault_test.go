//go:build fault

// Package fault holds the fault tests: they build the real bouncer binary,
// start Kafka and ClickHouse instances of their own (scripts/services, named
// fault-*), stream at least 200,000 events through worker processes while
// killing workers with SIGKILL, restarting ClickHouse and Kafka, and
// rebalancing two workers, then check the exactly-once invariant: count() of
// the events table (no FINAL) equals uniqExact of the row identity equals
// the good events produced, and dead_letters holds exactly the bad ones.
//
// Run with `make test` (a serial step after the other tests), or alone:
//
//	go test -tags fault -count=1 -v ./test/fault/
package fault

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

const (
	events   = 200_000 // messages produced per test, one event each
	badEvery = 1000    // every 1000th message is bad input
	good     = events - events/badEvery
	bad      = events / badEvery
)

var (
	repoRoot string
	binary   string
)

func TestMain(m *testing.M) {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "bouncer-fault-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bouncer")
	build := exec.Command("go", "build", "-o", binary, "./cmd/bouncer")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build bouncer:", err)
		os.Exit(1)
	}
	stdout, collected := teeStdout()
	code := m.Run()
	os.RemoveAll(dir)
	repeatFailures(stdout, collected())
	os.Exit(code)
}

// teeStdout passes the tests' output (os.Stdout) through and keeps its
// lines; collected returns them once the tests are done.
func teeStdout() (real *os.File, collected func() []string) {
	real = os.Stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return real, func() []string { return nil }
	}
	os.Stdout = pw
	done := make(chan []string)
	go func() {
		var lines []string
		br := bufio.NewReader(pr)
		for {
			line, err := br.ReadString('\n')
			real.WriteString(line)
			if line != "" {
				lines = append(lines, strings.TrimRight(line, "\n"))
			}
			if err != nil {
				done <- lines
				return
			}
		}
	}()
	return real, func() []string {
		os.Stdout = real
		pw.Close()
		return <-done
	}
}

// repeatFailures prints again the last lines each failed test logged: CI
// shows the end of the log, and the fault tests' output is long (TestCluster,
// first to run, failed at 29355a2 with its messages cut from what CI showed).
func repeatFailures(w *os.File, lines []string) {
	const keep = 40
	byTest := map[string][]string{}
	var failed []string
	current := ""
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if name, ok := cutAny(t, "=== RUN ", "=== CONT ", "=== NAME ", "=== PAUSE "); ok {
			current = strings.TrimSpace(name)
			continue
		}
		if name, ok := strings.CutPrefix(t, "--- FAIL: "); ok {
			name, _, _ = strings.Cut(name, " ")
			failed = append(failed, name)
			continue
		}
		if strings.HasPrefix(t, "--- ") || current == "" {
			continue
		}
		byTest[current] = append(byTest[current], l)
	}
	for _, name := range failed {
		out := byTest[name]
		if len(out) == 0 {
			continue // a parent test: its failed subtests are listed too
		}
		if len(out) > keep {
			out = out[len(out)-keep:]
		}
		fmt.Fprintf(w, "\n==> %s failed; its last %d lines of output (repeated: CI shows the end of the log):\n%s\n",
			name, len(out), strings.Join(out, "\n"))
	}
}

func cutAny(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			return rest, true
		}
	}
	return "", false
}

// instance is one scripts/services instance owned by a test.
type instance struct {
	name, brokers, clickhouse string
}

func services(t *testing.T, name string) *instance {
	t.Helper()
	out, err := script(t, "up", "--name", name)
	if err != nil {
		t.Fatalf("scripts/services up --name %s: %v\n%s", name, err, out)
	}
	inst := &instance{name: name}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "export ")
		if k, v, ok := strings.Cut(line, "="); ok {
			switch k {
			case "KAFKA_BROKERS":
				inst.brokers = v
			case "CLICKHOUSE_ADDR":
				inst.clickhouse = v
			}
		}
	}
	if inst.brokers == "" || inst.clickhouse == "" {
		t.Fatalf("scripts/services up printed no exports:\n%s", out)
	}
	t.Cleanup(func() {
		if out, err := script(t, "down", "--name", name); err != nil {
			t.Logf("services down %s: %v\n%s", name, err, out)
		}
	})
	return inst
}

func script(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", "services"), args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// run is one test's topic, database and consumer group on an instance.
type run struct {
	t     *testing.T
	inst  *instance
	topic string
	db    string
	logs  string
	extra []string // more environment for every process of the run
	mu    sync.Mutex
	procs []*exec.Cmd
}

func newRun(t *testing.T, inst *instance) *run {
	id := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))
	logs, err := os.MkdirTemp("", "bouncer-fault-logs-")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, inst: inst, topic: "fault." + id, db: "fault_" + id, logs: logs}
	t.Cleanup(func() {
		r.stopAll()
		if !t.Failed() {
			os.RemoveAll(logs)
		}
	})
	return r
}

func (r *run) env() []string {
	return append(append(os.Environ(),
		"KAFKA_BROKERS="+r.inst.brokers, "CLICKHOUSE_ADDR="+r.inst.clickhouse,
		"CLICKHOUSE_DATABASE="+r.db, "BOUNCER_TOPIC="+r.topic, "BOUNCER_SINK_GROUP="+r.topic+".sink",
		"BOUNCER_OPS_ADDR=127.0.0.1:0", "BOUNCER_SESSION_TIMEOUT=6s", "BOUNCER_PARTITIONS=4",
		"BOUNCER_LOG_FORMAT=json", "BOUNCER_MAX_BATCH_MESSAGES=2000",
	), r.extra...)
}

// produce runs `bouncer produce` to completion.
func (r *run) produce(ctx context.Context, rate int) error {
	cmd := exec.CommandContext(ctx, binary, "produce", "--quiet", "--count", fmt.Sprint(events),
		"--bad-every", fmt.Sprint(badEvery), "--rate", fmt.Sprint(rate), "--seed", "7")
	cmd.Env = r.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("produce: %v\n%s", err, out)
	}
	return nil
}

// startWorker starts a worker process; its log goes to a file.
func (r *run) startWorker(label string) *exec.Cmd {
	r.t.Helper()
	f, err := os.OpenFile(filepath.Join(r.logs, label+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(binary, "worker")
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start worker: %v", err)
	}
	go func() { cmd.Wait(); f.Close() }()
	r.mu.Lock()
	r.procs = append(r.procs, cmd)
	r.mu.Unlock()
	return cmd
}

func (r *run) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		p.Process.Kill()
	}
	r.procs = nil
}

// stopGracefully sends SIGTERM and waits for the exit.
func stopGracefully(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(os.Interrupt)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cmd.Process.Signal(nil) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("worker did not exit within 60s of SIGTERM")
}

// conn opens ClickHouse (any of a cluster's servers); queries retry, since
// tests restart the server.
func (r *run) conn() driver.Conn {
	c, err := ch.Open(&ch.Options{Addr: strings.Split(r.inst.clickhouse, ","), Auth: ch.Auth{Database: "default"}, DialTimeout: 3 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	return c
}

func (r *run) count(c driver.Conn, q string) (uint64, error) {
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.QueryRow(ctx, strings.ReplaceAll(q, "DB.", r.db+".")).Scan(&n)
	return n, err
}

// stored is events + dead letters, or 0 while the tables do not exist.
func (r *run) stored(c driver.Conn) uint64 {
	ev, err1 := r.count(c, "SELECT count() FROM DB.events WHERE derived = 0")
	dl, err2 := r.count(c, "SELECT count() FROM DB.dead_letters")
	if err1 != nil || err2 != nil {
		return 0
	}
	return ev + dl
}

// waitStored waits until at least n rows are stored.
func (r *run) waitStored(c driver.Conn, n uint64, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r.stored(c) >= n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("only %d rows stored after %s, want %d; worker logs in %s", r.stored(c), timeout, n, r.logs)
}

// check asserts the exactly-once invariant once everything has landed.
func (r *run) check(c driver.Conn) {
	r.t.Helper()
	r.waitStored(c, events, 5*time.Minute)
	time.Sleep(2 * time.Second) // a duplicate would show up now, not later
	queries := []struct {
		name, q string
		want    uint64
	}{
		// Derived dropped events (for processed events to suppressed
		// recipients) sit beside their source with their own identity.
		{"consumed events", "SELECT count() FROM DB.events WHERE derived = 0", good},
		{"distinct consumed sg_event_id", "SELECT uniqExact(sg_event_id) FROM DB.events WHERE derived = 0", good},
		{"count() of dead letters", "SELECT count() FROM DB.dead_letters", bad},
		{"uniqExact of dead-letter identity", "SELECT uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM DB.dead_letters", bad},
	}
	// count() (no FINAL) equals uniqExact of the row identity: no row twice.
	total, err1 := r.count(c, "SELECT count() FROM DB.events")
	distinct, err2 := r.count(c, "SELECT uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM DB.events")
	if err1 != nil || err2 != nil || total != distinct || total < good {
		r.t.Errorf("count() = %d, uniqExact(identity) = %d (errors %v %v); want equal and at least %d", total, distinct, err1, err2, good)
	}
	for _, q := range queries {
		n, err := r.count(c, q.q)
		if err != nil {
			r.t.Errorf("%s: %v", q.name, err)
			continue
		}
		if n != q.want {
			r.t.Errorf("%s = %d, want %d", q.name, n, q.want)
		}
	}
	if r.t.Failed() {
		r.t.Logf("worker logs kept in %s", r.logs)
	}
}

// progressing waits until stored rows grow by at least step beyond from,
// so a fault lands while inserts are in progress.
func (r *run) progressing(c driver.Conn, from, step uint64) uint64 {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if n := r.stored(c); n >= from+step {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("no progress past %d rows in 3 minutes; worker logs in %s", from, r.logs)
	return 0
}

func TestKillNineFiveTimes(t *testing.T) {
	inst := services(t, "fault-kill")
	r := newRun(t, inst)
	c := r.conn()
	ctx := context.Background()
	produced := make(chan error, 1)
	go func() { produced <- r.produce(ctx, 8000) }()
	w := r.startWorker("worker")
	var at uint64
	// Each restart with other batch bounds: the derived drops must not
	// depend on them, nor on the kills (checkDrops).
	batches := []string{"150", "700", "300", "1000", "2000"}
	for i := 1; i <= 5; i++ {
		at = r.progressing(c, at, 6000)
		if err := w.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill -9 #%d with %d rows stored; restarting with batches of at most %s messages", i, at, batches[i-1])
		w = r.startWorkerEnv("worker", append(r.env(), "BOUNCER_MAX_BATCH_MESSAGES="+batches[i-1]))
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.check(c)
	r.checkDrops(t)
	stopGracefully(t, w)
}

func TestClickHouseRestart(t *testing.T) {
	inst := services(t, "fault-clickhouse")
	r := newRun(t, inst)
	c := r.conn()
	produced := make(chan error, 1)
	go func() { produced <- r.produce(context.Background(), 10000) }()
	w := r.startWorker("worker")
	at := r.progressing(c, 0, 20000)
	for i := 1; i <= 2; i++ {
		if out, err := script(t, "stop-clickhouse", "--name", inst.name, "--kill"); err != nil {
			t.Fatalf("stop clickhouse: %v\n%s", err, out)
		}
		t.Logf("clickhouse killed with %d rows stored", at)
		time.Sleep(3 * time.Second)
		if out, err := script(t, "start-clickhouse", "--name", inst.name); err != nil {
			t.Fatalf("start clickhouse: %v\n%s", err, out)
		}
		at = r.progressing(c, at, 20000)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.check(c)
	stopGracefully(t, w)
}

func TestKafkaRestart(t *testing.T) {
	inst := services(t, "fault-kafka")
	r := newRun(t, inst)
	c := r.conn()
	// All events are in Kafka before the worker starts; the broker then
	// restarts while the worker consumes.
	if err := r.produce(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	w := r.startWorker("worker")
	at := r.progressing(c, 0, 20000)
	if out, err := script(t, "stop-kafka", "--name", inst.name, "--kill"); err != nil {
		t.Fatalf("stop kafka: %v\n%s", err, out)
	}
	t.Logf("kafka killed with %d rows stored", at)
	time.Sleep(2 * time.Second)
	if out, err := script(t, "start-kafka", "--name", inst.name); err != nil {
		t.Fatalf("start kafka: %v\n%s", err, out)
	}
	r.check(c)
	stopGracefully(t, w)
}

func TestTwoWorkersOneKilled(t *testing.T) {
	inst := services(t, "fault-group")
	r := newRun(t, inst)
	c := r.conn()
	produced := make(chan error, 1)
	go func() { produced <- r.produce(context.Background(), 8000) }()
	a := r.startWorker("a")
	b := r.startWorker("b")
	at := r.progressing(c, 0, 30000)
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("worker a killed with %d rows stored; b takes over its partitions", at)
	at = r.progressing(c, at, 30000)
	a = r.startWorker("a")
	t.Logf("worker a restarted with %d rows stored; the group rebalances again", at)
	at = r.progressing(c, at, 30000)
	stopGracefully(t, b)
	t.Logf("worker b stopped with %d rows stored", at)
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	r.check(c)
	// Partitions moved between the workers three times: the derived drops
	// are still exactly those of one message per batch.
	r.checkDrops(t)
	stopGracefully(t, a)
}
