package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/procstat"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/suppression"
)

// BenchmarkWorkerSlices measures real `bouncer worker` processes (this
// package built to a binary, sink group only) holding the suppression
// slices of their partitions: BOUNCER_BENCH_ADDRESSES suppressed addresses
// (default 1,000,000) on a change log of 8 partitions, an event topic of 8
// partitions, and 1, 2 and 4 workers in one group (plus one worker on an
// empty change log, the base). For each worker count it waits until every
// worker is ready and holds its 8/N slices only (released ones are dropped
// after 30 s), waits 150 s for the runtime to collect and return what the
// first assignments' slices took, and reports per worker the resident
// set (rss-MB, the largest of the workers; rss-sum-MB, all of them), its peak during start-up and
// rebalances (peak-MB) and the Go heap in use (heap-MB), and the slowest
// slice load (load-s, one partition's slice, while the other partitions of
// the same worker load beside it). BOUNCER_BENCH_CHANGELOG reuses a change
// log. Run:
//
//	go test -run '^$' -bench WorkerSlices -benchtime 1x -timeout 60m ./cmd/bouncer/
func BenchmarkWorkerSlices(b *testing.B) {
	brokers := testenv.Kafka(b)
	chAddr := testenv.ClickHouse(b)
	db := testenv.Database(b, chAddr)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	ctx := context.Background()
	addresses := 1_000_000
	if v := os.Getenv("BOUNCER_BENCH_ADDRESSES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 8 {
			b.Fatalf("BOUNCER_BENCH_ADDRESSES=%q: want a number of at least 8", v)
		}
		addresses = n
	}
	const partitions = 8
	changelog := os.Getenv("BOUNCER_BENCH_CHANGELOG")
	if changelog == "" {
		changelog = fmt.Sprintf("bench.slices.%d.%d", addresses, time.Now().UnixNano())
		start := time.Now()
		writeBenchChanges(b, ctx, conn, changelog, partitions, addresses)
		b.Logf("wrote %d changes to %s in %s", addresses, changelog, time.Since(start).Round(time.Millisecond))
	}
	empty := fmt.Sprintf("bench.slices.empty.%d", time.Now().UnixNano())
	if err := consumer.EnsureChangeLog(ctx, conn, empty, partitions); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "bouncer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "KAFKA_BROKERS="+brokers, "CLICKHOUSE_ADDR="+chAddr, "CLICKHOUSE_DATABASE="+db,
		"BOUNCER_WEBHOOKS=false", "BOUNCER_RUN_WEBHOOKS=", "BOUNCER_LOG_FORMAT=json")
	migrate := exec.Command(bin, "migrate")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		b.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, run := range []struct {
		name      string
		workers   int
		changelog string
	}{{"base", 1, empty}, {"workers=1", 1, changelog}, {"workers=2", 2, changelog}, {"workers=4", 4, changelog}} {
		b.Run(run.name, func(b *testing.B) {
			for range b.N {
				topic := testenv.Topic(b, brokers, partitions)
				var ws []*benchWorker
				for i := range run.workers {
					ws = append(ws, startBenchWorker(b, bin, append(env, "BOUNCER_TOPIC="+topic, "BOUNCER_SINK_GROUP="+topic+".sink",
						"BOUNCER_CHANGELOG_TOPIC="+run.changelog, "BOUNCER_MIGRATE=false", "BOUNCER_PARTITIONS=8"), i))
				}
				defer func() {
					for _, w := range ws {
						w.stop()
					}
				}()
				start := time.Now()
				want := float64(partitions / run.workers)
				deadline := start.Add(20 * time.Minute)
				for {
					settled := true
					for _, w := range ws {
						m := w.metrics(b)
						if !w.ready() || m["bouncer_suppression_slices_held"] != want {
							settled = false
						}
					}
					if settled {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("workers not ready with %v slices each after 20 minutes; logs: %s", want, ws[0].log)
					}
					time.Sleep(time.Second)
				}
				b.Logf("%s: ready with %v slices each after %s", run.name, want, time.Since(start).Round(time.Second))
				// The slices of the first assignments (before every worker
				// joined) are garbage now: the runtime collects it at its
				// next GC (forced every 2 minutes) and returns the pages to
				// the system gradually after that.
				time.Sleep(150 * time.Second)
				var rss, peak, heap, load, sum float64
				for _, w := range ws {
					m := w.metrics(b)
					mem, err := procstat.ReadMemory(w.cmd.Process.Pid)
					if err != nil {
						b.Fatal(err)
					}
					rss = max(rss, float64(mem.RSS)/(1<<20))
					sum += float64(mem.RSS) / (1 << 20)
					peak = max(peak, float64(mem.Peak)/(1<<20))
					heap = max(heap, m["go_memstats_heap_inuse_bytes"]/(1<<20))
					load = max(load, m["load"])
				}
				b.ReportMetric(rss, "rss-MB")
				b.ReportMetric(sum, "rss-sum-MB")
				b.ReportMetric(peak, "peak-MB")
				b.ReportMetric(heap, "heap-MB")
				b.ReportMetric(load, "load-s")
			}
		})
	}
}

type benchWorker struct {
	cmd  *exec.Cmd
	ops  string
	log  string
	done chan struct{}
}

func startBenchWorker(b *testing.B, bin string, env []string, i int) *benchWorker {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ops := l.Addr().String()
	l.Close()
	logPath := filepath.Join(b.TempDir(), fmt.Sprintf("worker%d.log", i))
	f, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "worker", "--webhooks=false", "--ops-addr", ops)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := &benchWorker{cmd: cmd, ops: ops, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(w.done) }()
	return w
}

func (w *benchWorker) stop() {
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *benchWorker) ready() bool {
	resp, err := http.Get("http://" + w.ops + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

// metrics reads the worker's unlabelled gauges it reports; "load" is the
// largest bouncer_suppression_slice_load_seconds.
func (w *benchWorker) metrics(b *testing.B) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + w.ops + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if strings.HasPrefix(name, "bouncer_suppression_slice_load_seconds{") {
			out["load"] = max(out["load"], v)
			continue
		}
		out[name] = v
	}
	return out
}

// writeBenchChanges puts n bounces of distinct addresses (two accounts) on
// a new change log.
func writeBenchChanges(b *testing.B, ctx context.Context, conn consumer.Conn, topic string, partitions, n int) {
	w, err := consumer.OpenChangeLog(ctx, conn, topic, partitions)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	at := time.Unix(1764201600, 0)
	batch := make([]suppression.Change, 0, 20000)
	for i := range n {
		batch = append(batch, suppression.Change{
			AccountID: "acct" + strconv.Itoa(i%2), List: suppression.ListBounces,
			EmailNorm: "user" + strconv.Itoa(i) + "@example" + strconv.Itoa(i%1000) + ".com", Email: "User" + strconv.Itoa(i) + "@example.com",
			At: at.Add(time.Duration(i) * time.Millisecond), Reason: "550 5.1.1 user unknown", Status: "5.1.1",
			Classification: "Invalid Address", ReasonCode: "user_unknown", Source: "event:x" + strconv.Itoa(i),
			Src: suppression.Position{Topic: "events", Partition: i % partitions, Offset: int64(i)},
		})
		if len(batch) == cap(batch) || i == n-1 {
			if err := w.PublishChanges(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
