package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/internal/progress"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("bench", "measure end-to-end ingest against ClickHouse's own Kafka engine on the same events", runBench)
}

const benchUsage = `
Usage: bouncer bench [flags]

Produces --count single-object events (realistic, generated) to a fresh topic,
then measures, one after the other on the same machine:

  bouncer   a 'bouncer worker' process (this binary) consuming the topic into
            ClickHouse: decode, classify, suppressions, exactly once.
  peer      ClickHouse's Kafka table engine with a materialized view into an
            equivalent MergeTree table, given its best settings: one consumer
            per partition, JSONEachRow with unknown fields skipped, reading
            from the earliest offset.

Each is timed from its start until count() of its table reaches --count.
Prints both rates, their ratio, and the worker's peak RSS. Use a ClickHouse
and Kafka of your own (make bench starts a dedicated local instance); the
bench creates databases bench_bouncer_* and bench_peer_* and drops them after.

  make bench
  bouncer bench --count 1000000 --partitions 4
`

func runBench(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "bench", benchUsage)
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	cf := addClickHouseFlags(e)
	count := fs.Int("count", 1_000_000, "events to produce and ingest")
	partitions := fs.Int("partitions", 4, "partitions of the bench topic (and the peer's consumers)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up on a contender after this long")
	keep := fs.Bool("keep", false, "keep the bench databases and topic")
	quiet := fs.Bool("quiet", false, "no progress on stderr (the bench's own step lines stay)")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if *count < 1 || *partitions < 1 {
		return usagef("--count and --partitions must be at least 1")
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	id := time.Now().UTC().Format("20060102_150405")
	topic := "bench." + id
	bouncerDB, peerDB := "bench_bouncer_"+id, "bench_peer_"+id
	log := func(format string, args ...any) { fmt.Fprintf(env.stderr, "bench: "+format+"\n", args...) }

	admin, err := clickhouse.OpenBench(chCfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	if !*keep {
		defer admin.Drop(context.WithoutCancel(ctx), peerDB, bouncerDB)
	}

	// 1. Produce.
	if err := consumer.EnsureTopic(ctx, conn, topic, *partitions); err != nil {
		return err
	}
	log("producing %d events to %s (%d partitions)", *count, topic, *partitions)
	produceStart := time.Now()
	if err := benchProduce(ctx, conn, topic, *count, env, progress.ModeFor(env.stderr, *quiet)); err != nil {
		return err
	}
	produceRate := float64(*count) / time.Since(produceStart).Seconds()

	// 2. bouncer: a worker process from this binary.
	log("bouncer: starting a worker")
	worker := exec.CommandContext(ctx, self, "worker", "--migrate=true", "--ops-addr=", "--log-level=warn")
	worker.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(conn.Brokers, ","), "BOUNCER_TOPIC="+topic,
		"BOUNCER_SINK_GROUP=bench-"+id, "CLICKHOUSE_DATABASE="+bouncerDB,
		"CLICKHOUSE_ADDR="+strings.Join(chCfg.Addr, ","), "BOUNCER_PARTITIONS="+fmt.Sprint(*partitions),
	)
	worker.Stderr = env.stderr
	start := time.Now()
	if err := worker.Start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	err = waitCount(wctx, admin, bouncerDB, uint64(*count), env, "bouncer", progress.ModeFor(env.stderr, *quiet))
	cancel()
	bouncerTime := time.Since(start)
	peakRSS := peakRSSKiB(worker.Process.Pid)
	worker.Process.Signal(syscall.SIGTERM)
	worker.Wait()
	if rs, ok := worker.ProcessState.SysUsage().(*syscall.Rusage); ok && rs.Maxrss > peakRSS {
		peakRSS = rs.Maxrss
	}
	if err != nil {
		return fmt.Errorf("bouncer: %w", err)
	}

	// 3. The peer: ClickHouse's Kafka engine.
	log("peer: ClickHouse Kafka engine, %d consumers", *partitions)
	if err := admin.StartPeer(ctx, peerDB, strings.Join(conn.Brokers, ","), topic, "bench-peer-"+id, *partitions); err != nil {
		return err
	}
	start = time.Now()
	pctx, cancel := context.WithTimeout(ctx, *timeout)
	err = waitCount(pctx, admin, peerDB, uint64(*count), env, "peer", progress.ModeFor(env.stderr, *quiet))
	cancel()
	peerTime := time.Since(start)
	admin.StopPeer(context.WithoutCancel(ctx), peerDB)
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}

	bouncerRate := float64(*count) / bouncerTime.Seconds()
	peerRate := float64(*count) / peerTime.Seconds()
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "events\t%d\n", *count)
	fmt.Fprintf(tw, "partitions\t%d\n", *partitions)
	fmt.Fprintf(tw, "produce rate (kafka-go writer)\t%.0f events/s\n", produceRate)
	fmt.Fprintf(tw, "bouncer worker\t%.0f events/s\t(%s)\n", bouncerRate, bouncerTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "ClickHouse Kafka engine\t%.0f events/s\t(%s)\n", peerRate, peerTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "ratio bouncer/peer\t%.2f\n", bouncerRate/peerRate)
	fmt.Fprintf(tw, "worker peak RSS\t%.1f MiB\n", float64(peakRSS)/1024)
	return tw.Flush()
}

func benchProduce(ctx context.Context, conn consumer.Conn, topic string, count int, env *environment, mode progress.Mode) error {
	w, err := consumer.NewWriter(conn, topic, consumer.WriterConfig{BatchSize: 5000, BatchBytes: 1 << 20, BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	defer w.Close()
	gen := eventgen.New(42)
	bar := progress.New(env.stderr, progress.Config{Label: "producing", Unit: "events", Total: int64(count), Mode: mode})
	defer bar.Finish()
	const chunk = 5000
	msgs := make([]kafka.Message, 0, chunk)
	for made := 0; made < count; {
		msgs = msgs[:0]
		for len(msgs) < chunk && made < count {
			v, _ := gen.Next(nil)
			msgs = append(msgs, kafka.Message{Key: recipientKey(v), Value: v})
			made++
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce: %w", writeError(err))
		}
		bar.Add(int64(len(msgs)))
	}
	return nil
}

// waitCount polls the count of db's events until it reaches n.
func waitCount(ctx context.Context, b *clickhouse.Bench, db string, n uint64, env *environment, label string, mode progress.Mode) error {
	bar := progress.New(env.stderr, progress.Config{Label: label, Unit: "events", Total: int64(n), Mode: mode})
	defer bar.Finish()
	for {
		if got, err := b.Count(ctx, db); err == nil {
			bar.Set(int64(min(got, n)))
			if got >= n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s.events did not reach %d rows: %w", db, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// peakRSSKiB reads VmHWM of a running process (0 if unknown).
func peakRSSKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kib)
			return kib
		}
	}
	return 0
}
