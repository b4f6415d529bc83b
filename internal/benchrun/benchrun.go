// Package benchrun is the end-to-end ingest benchmark behind bouncer bench:
// it produces generated events to a fresh topic and times, on the same
// events, a bouncer worker process (of any bouncer binary, so that two
// builds can be compared with one harness) and ClickHouse's own Kafka
// engine, sampling CPU and memory from /proc.
//
// # Contract
//
//   - Every contender reads the same topic with a consumer group and a
//     database of its own (bench_bouncer_* and bench_peer_*, dropped after
//     each run unless Config.Keep), and is timed from its start until its
//     events table holds Config.Count rows; between contenders Run waits
//     (up to 30 s) for the server's merges, so one contender's merges are
//     not charged to the next.
//   - CPU of the ClickHouse server and the Kafka broker is measured only
//     when they listen on this machine; the report says n/a otherwise.
//   - The worker runs with every feature on, the user-agent and geoip
//     look-ups of opens and clicks included (a small geoip database written
//     for the run, internal/geotest).
//   - Run never touches other databases or topics; it stops the worker
//     process it started, also on errors.
//   - With Config.Misplaced, the worker is measured once per share on a
//     topic of its own, in the same run (one after the other, each run):
//     the events of that share of the recipients are in another partition
//     than consumer.PartitionOf says (the next one), the others where it
//     says, so the worker re-routes that share (docs/scaling.md). The peer
//     reads the first share's topic. Without it, events are keyed by their
//     address with kafka-go's hash, as before (about (n-1)/n misplaced).
package benchrun

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/internal/geotest"
	"github.com/bouncer-mail/bouncer/internal/procstat"
	"github.com/bouncer-mail/bouncer/internal/progress"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

// Config of Run.
type Config struct {
	Conn       consumer.Conn
	ClickHouse clickhouse.Config
	// Worker is the bouncer binary whose `bouncer worker` is measured.
	// Required.
	Worker string
	// Count events are produced and ingested; Partitions of the topic; the
	// contenders are measured Runs times on the same topic. All at least 1.
	Count, Partitions, Runs int
	// PeerConsumers are the numbers of Kafka engine consumers the peer is
	// measured with; empty: bouncer only.
	PeerConsumers []int
	// OpsAddr is the worker's ops address, for /debug/pprof ("": none).
	OpsAddr string
	// Timeout bounds one contender's run.
	Timeout time.Duration
	// Keep keeps the bench databases and topic.
	Keep bool
	// Misplaced are the shares (percent, 0 to 100) of recipients whose
	// events are in another partition than consumer.PartitionOf says, one
	// topic and one worker contender per share; empty: kafka-go's hash of
	// the address.
	Misplaced []int
	// Stderr gets the step lines and progress, in Mode.
	Stderr io.Writer
	Mode   progress.Mode
}

// Run runs the benchmark and writes its report to out: a line per
// contender and run, then the medians over the runs.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	admin, err := clickhouse.OpenBench(cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer admin.Close()
	b := &bench{
		stderr: cfg.Stderr, conn: cfg.Conn, ch: cfg.ClickHouse, admin: admin, self: cfg.Worker, count: cfg.Count, partitions: cfg.Partitions,
		opsAddr: cfg.OpsAddr, timeout: cfg.Timeout, keep: cfg.Keep, mode: cfg.Mode,
		id: time.Now().UTC().Format("20060102_150405"),
	}
	b.topic = "bench." + b.id
	shares := cfg.Misplaced
	if len(shares) == 0 {
		shares = []int{-1} // kafka-go's hash
	}
	topics := make([]string, len(shares))
	for i, share := range shares {
		topics[i] = b.topic
		if share >= 0 {
			topics[i] = fmt.Sprintf("%s.m%d", b.topic, share)
		}
	}
	b.topic = topics[0] // the peer's
	b.chPID = localListener(cfg.ClickHouse.Addr[0])
	b.kafkaPID = localListener(cfg.Conn.Brokers[0])
	if b.chPID == 0 || b.kafkaPID == 0 {
		b.log("ClickHouse server pid %d, Kafka broker pid %d (0: not on this machine or not readable): their CPU is not measured", b.chPID, b.kafkaPID)
	}

	// The worker places the ips of opens and clicks (every feature on): a
	// small database that knows the generated ones.
	geoDir, err := os.MkdirTemp("", "bouncer-bench-geo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(geoDir)
	b.geoDB = filepath.Join(geoDir, "bench-city.mmdb")
	if err := geotest.Write(b.geoDB); err != nil {
		return fmt.Errorf("bench geoip database: %w", err)
	}

	var produceRate float64
	for i, topic := range topics {
		if err := consumer.EnsureTopic(ctx, cfg.Conn, topic, cfg.Partitions); err != nil {
			return err
		}
		b.log("producing %d events to %s (%d partitions)", cfg.Count, topic, cfg.Partitions)
		produceStart := time.Now()
		if err := produce(ctx, cfg.Conn, topic, cfg.Count, shares[i], cfg.Stderr, b.mode); err != nil {
			return err
		}
		if i == 0 {
			produceRate = float64(cfg.Count) / time.Since(produceStart).Seconds()
		}
	}

	var results [][]benchResult
	for run := 1; run <= cfg.Runs; run++ {
		var rs []benchResult
		for i, topic := range topics {
			r, err := b.bouncer(ctx, run, i, topic)
			if err != nil {
				return fmt.Errorf("bouncer: %w", err)
			}
			if shares[i] >= 0 {
				r.name = fmt.Sprintf("bouncer worker, %d%% misplaced", shares[i])
			}
			rs = append(rs, r)
		}
		for _, n := range cfg.PeerConsumers {
			r, err := b.peer(ctx, run, n)
			if err != nil {
				return fmt.Errorf("peer with %d consumers: %w", n, err)
			}
			rs = append(rs, r)
		}
		results = append(results, rs)
	}
	return report(out, cfg.Count, cfg.Partitions, produceRate, b.chPID != 0, b.kafkaPID != 0, len(topics), results)
}

// bench is one Run.
type bench struct {
	stderr            io.Writer
	conn              consumer.Conn
	ch                clickhouse.Config
	admin             *clickhouse.Bench
	self, opsAddr     string
	id, topic         string
	geoDB             string // the worker's BOUNCER_GEOIP_DB
	count, partitions int
	timeout           time.Duration
	keep              bool
	mode              progress.Mode
	chPID, kafkaPID   int // 0: not on this machine
}

// benchResult is one contender's run.
type benchResult struct {
	name     string
	bouncer  bool
	elapsed  time.Duration
	steady   float64       // events/s between 10% and 90% of count
	first    time.Duration // to the first rows in the table
	commit   time.Duration // to the group's first commit; 0: none seen
	cpu      [3]time.Duration
	rss      int64 // worker's peak, bytes
	serverRS int64 // ClickHouse server's highest sampled RSS, bytes
	// server is the growth of the ClickHouse server's counters (system.events)
	// during the run: queries, parts written, rows merged.
	server map[string]uint64
}

// CPU slots of benchResult.cpu.
const (
	cpuWorker = iota
	cpuClickHouse
	cpuKafka
)

func (r benchResult) rate(count int) float64 { return float64(count) / r.elapsed.Seconds() }

func (b *bench) log(format string, args ...any) {
	fmt.Fprintf(b.stderr, "bench: "+format+"\n", args...)
}

// bouncer measures a worker process of the Config.Worker binary on topic
// (the i-th of the run).
func (b *bench) bouncer(ctx context.Context, run, i int, topic string) (benchResult, error) {
	db := fmt.Sprintf("bench_bouncer_%s_%d", b.id, run)
	group := fmt.Sprintf("bench-%s-%d", b.id, run)
	if i > 0 {
		db += fmt.Sprintf("_%d", i)
		group += fmt.Sprintf("-%d", i)
	}
	if !b.keep {
		defer b.admin.Drop(context.WithoutCancel(ctx), db)
	}
	b.log("run %d: bouncer worker on %s", run, topic)
	// Stopped explicitly below; the context only guards against an early
	// return leaving the process behind.
	worker := exec.CommandContext(ctx, b.self, "worker", "--migrate=true", "--ops-addr="+b.opsAddr, "--log-level=warn")
	prefix := topic + "." + strconv.Itoa(run)
	worker.Env = append(os.Environ(),
		"KAFKA_BROKERS="+strings.Join(b.conn.Brokers, ","), "BOUNCER_TOPIC="+topic,
		"BOUNCER_SINK_GROUP="+group, "CLICKHOUSE_DATABASE="+db,
		// Each run starts with empty lists, as the first did.
		"BOUNCER_CHANGELOG_TOPIC="+prefix+".suppressions", "BOUNCER_DLQ_TOPIC="+prefix+".dlq",
		"CLICKHOUSE_ADDR="+strings.Join(b.ch.Addr, ","), "BOUNCER_PARTITIONS="+fmt.Sprint(b.partitions),
		"BOUNCER_GEOIP_DB="+b.geoDB,
	)
	worker.Stderr = b.stderr
	defer func() {
		if worker.Process != nil && worker.ProcessState == nil {
			worker.Process.Kill()
			worker.Wait()
		}
	}()
	r, err := b.measure(ctx, "bouncer", db, group, topic, func() (int, error) {
		if err := worker.Start(); err != nil {
			return 0, err
		}
		return worker.Process.Pid, nil
	})
	r.name, r.bouncer = "bouncer worker", true
	worker.Process.Signal(syscall.SIGTERM)
	worker.Wait()
	if rs, ok := worker.ProcessState.SysUsage().(*syscall.Rusage); ok && rs.Maxrss<<10 > r.rss {
		r.rss = rs.Maxrss << 10
	}
	if err != nil {
		return r, err
	}
	b.settle(ctx)
	return r, nil
}

// peer measures ClickHouse's Kafka engine with n consumers.
func (b *bench) peer(ctx context.Context, run, n int) (benchResult, error) {
	db := fmt.Sprintf("bench_peer_%s_%d_%d", b.id, run, n)
	group := fmt.Sprintf("bench-peer-%s-%d-%d", b.id, run, n)
	if !b.keep {
		defer b.admin.Drop(context.WithoutCancel(ctx), db)
	}
	b.log("run %d: peer, ClickHouse Kafka engine with %d consumers", run, n)
	r, err := b.measure(ctx, "peer", db, group, b.topic, func() (int, error) {
		return 0, b.admin.StartPeer(ctx, db, strings.Join(b.conn.Brokers, ","), b.topic, group, n)
	})
	r.name = fmt.Sprintf("peer, %d consumer%s", n, map[bool]string{true: "s"}[n > 1])
	b.admin.StopPeer(context.WithoutCancel(ctx), db)
	if err != nil {
		return r, err
	}
	b.settle(ctx)
	return r, nil
}

// measure starts a contender (start returns its process id, 0 when it runs
// inside the ClickHouse server) and samples it until db's events table
// holds count rows.
func (b *bench) measure(ctx context.Context, label, db, group, topic string, start func() (int, error)) (benchResult, error) {
	var r benchResult
	cpu0 := [3]time.Duration{cpuClickHouse: b.cpu(b.chPID), cpuKafka: b.cpu(b.kafkaPID)}
	ev0, _ := b.admin.ServerEvents(ctx)
	began := time.Now()
	pid, err := start()
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	bar := progress.New(b.stderr, progress.Config{Label: label, Unit: "events", Total: int64(b.count), Mode: b.mode})
	defer bar.Finish()
	n := uint64(b.count)
	lo, hi := n/10, n-n/10
	var tLo, tHi time.Duration
	var nLo, nHi uint64
	for {
		got, _ := b.admin.Count(ctx, db)
		at := time.Since(began)
		bar.Set(int64(min(got, n)))
		if got > 0 && r.first == 0 {
			r.first = at
		}
		if got >= lo && tLo == 0 {
			tLo, nLo = at, got
		}
		if got >= hi && tHi == 0 {
			tHi, nHi = at, got
		}
		if r.commit == 0 {
			if offs, err := consumer.Committed(ctx, b.conn, group, topic, b.partitions); err == nil && slices.ContainsFunc(offs, func(o int64) bool { return o > 0 }) {
				r.commit = time.Since(began)
			}
		}
		if m, err := procstat.ReadMemory(b.chPID); err == nil {
			r.serverRS = max(r.serverRS, m.RSS)
		}
		if got >= n {
			r.elapsed = at
			break
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%s.events did not reach %d rows: %w", db, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if tHi > tLo {
		r.steady = float64(nHi-nLo) / (tHi - tLo).Seconds()
	}
	if ev1, err := b.admin.ServerEvents(ctx); err == nil && ev0 != nil {
		r.server = map[string]uint64{}
		for k, v := range ev1 {
			r.server[k] = v - ev0[k]
		}
	}
	r.cpu[cpuClickHouse] = b.cpu(b.chPID) - cpu0[cpuClickHouse]
	r.cpu[cpuKafka] = b.cpu(b.kafkaPID) - cpu0[cpuKafka]
	if pid != 0 {
		r.cpu[cpuWorker] = b.cpu(pid)
		if m, err := procstat.ReadMemory(pid); err == nil {
			r.rss = m.Peak
		}
	}
	return r, nil
}

func (b *bench) cpu(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := procstat.CPU(pid)
	return d
}

// settle waits, up to 30 s, for the server's merges to finish.
func (b *bench) settle(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := b.admin.Merges(ctx); err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// localListener is the pid of the process listening on addr's port when
// addr is on this machine, else 0.
func localListener(addr string) int {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	pid, err := procstat.ListenerPID(p)
	if err != nil {
		return 0
	}
	return pid
}

func report(w io.Writer, count, partitions int, produceRate float64, chCPU, kafkaCPU bool, workers int, runs [][]benchResult) error {
	perM := func(d time.Duration) float64 { return d.Seconds() / (float64(count) / 1e6) }
	cpuCol := func(d time.Duration, measured bool) string {
		if !measured {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", perM(d))
	}
	mib := func(n int64) string {
		if n <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	secs := func(d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	rate := func(v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	fmt.Fprintf(w, "events %d, partitions %d, produced at %.0f events/s (kafka-go writer)\n\n", count, partitions, produceRate)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tcontender\tevents/s\tsteady/s\tfirst rows\tfirst commit\tCPU s/M: worker\tClickHouse\tKafka\ttotal\tworker peak RSS\tClickHouse RSS\t")
	for i, rs := range runs {
		for _, r := range rs {
			worker := "-"
			if r.bouncer {
				worker = cpuCol(r.cpu[cpuWorker], true)
			}
			total := r.cpu[cpuWorker] + r.cpu[cpuClickHouse] + r.cpu[cpuKafka]
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", i+1, r.name, r.rate(count), rate(r.steady),
				secs(r.first), secs(r.commit), worker, cpuCol(r.cpu[cpuClickHouse], chCPU), cpuCol(r.cpu[cpuKafka], kafkaCPU),
				cpuCol(total, chCPU && kafkaCPU), mib(r.rss), mib(r.serverRS))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nClickHouse server work during each contender's run (system.events; selects include the bench's count polls)\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tcontender\tinserts\tparts written\tinserted rows\tselects\tmerged rows\t")
	for i, rs := range runs {
		for _, r := range rs {
			e := r.server
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t\n", i+1, r.name, e["InsertQuery"], e["MergeTreeDataWriterBlocks"], e["InsertedRows"], e["SelectQuery"], e["MergedRows"])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// Per run: bouncer against the peer's best consumer count of that run.
	var ratios, steadyRatios, bRates, pRates, bCPU, bTotal, pTotal, rss, commits []float64
	for _, rs := range runs {
		bo := rs[0]
		bRates = append(bRates, bo.rate(count))
		bCPU = append(bCPU, perM(bo.cpu[cpuWorker]))
		bTotal = append(bTotal, perM(bo.cpu[cpuWorker]+bo.cpu[cpuClickHouse]+bo.cpu[cpuKafka]))
		rss = append(rss, float64(bo.rss)/(1<<20))
		commits = append(commits, bo.commit.Seconds())
		if len(rs) == workers {
			continue // no peer
		}
		best := rs[workers]
		for _, r := range rs[workers+1:] {
			if r.rate(count) > best.rate(count) {
				best = r
			}
		}
		pRates = append(pRates, best.rate(count))
		ratios = append(ratios, bo.rate(count)/best.rate(count))
		if best.steady > 0 && bo.steady > 0 {
			steadyRatios = append(steadyRatios, bo.steady/best.steady)
		}
		pTotal = append(pTotal, perM(best.cpu[cpuClickHouse]+best.cpu[cpuKafka]))
	}
	fmt.Fprintf(w, "\nmedians over %d run(s); the peer at its best consumer count of each run\n", len(runs))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%.0f events/s\n", runs[0][0].name, median(bRates))
	if len(ratios) > 0 {
		fmt.Fprintf(tw, "ClickHouse Kafka engine (best)\t%.0f events/s\n", median(pRates))
		fmt.Fprintf(tw, "ratio bouncer/peer\t%.2f\t(runs: %s)\n", median(ratios), joinFloats(ratios))
	}
	if len(steadyRatios) > 0 {
		fmt.Fprintf(tw, "ratio bouncer/peer, steady\t%.2f\t(runs: %s)\n", median(steadyRatios), joinFloats(steadyRatios))
	}
	fmt.Fprintf(tw, "worker CPU per event\t%.2f µs\n", median(bCPU))
	if chCPU && kafkaCPU {
		if len(pTotal) > 0 {
			fmt.Fprintf(tw, "total CPU s/M, bouncer / peer\t%.2f / %.2f\t(worker + ClickHouse + Kafka)\n", median(bTotal), median(pTotal))
		} else {
			fmt.Fprintf(tw, "total CPU s/M, bouncer\t%.2f\t(worker + ClickHouse + Kafka)\n", median(bTotal))
		}
	}
	fmt.Fprintf(tw, "worker peak RSS\t%.0f MiB\n", median(rss))
	fmt.Fprintf(tw, "worker time to first commit\t%.1fs\n", median(commits))
	// The other workers of each run (the misplaced shares) against the
	// first, run by run.
	for j := 1; j < workers; j++ {
		var rates, cpus, rateRatios, cpuRatios []float64
		for _, rs := range runs {
			r, first := rs[j], rs[0]
			rates, cpus = append(rates, r.rate(count)), append(cpus, perM(r.cpu[cpuWorker]))
			rateRatios = append(rateRatios, r.rate(count)/first.rate(count))
			cpuRatios = append(cpuRatios, perM(r.cpu[cpuWorker])/perM(first.cpu[cpuWorker]))
		}
		fmt.Fprintf(tw, "%s\t%.0f events/s, worker CPU %.2f s/M\n", runs[0][j].name, median(rates), median(cpus))
		fmt.Fprintf(tw, "  against %s\tevents/s x%.2f (runs: %s), worker CPU x%.2f (runs: %s)\n", runs[0][0].name,
			median(rateRatios), joinFloats(rateRatios), median(cpuRatios), joinFloats(cpuRatios))
	}
	return tw.Flush()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func joinFloats(v []float64) string {
	s := make([]string, len(v))
	for i, f := range v {
		s[i] = fmt.Sprintf("%.2f", f)
	}
	return strings.Join(s, ", ")
}

// produce writes count generated events to topic, keyed by recipient:
// with kafka-go's hash when misplaced < 0, else misplaced percent of the
// recipients in the partition after the one consumer.PartitionOf says, the
// others where it says.
func produce(ctx context.Context, conn consumer.Conn, topic string, count, misplaced int, stderr io.Writer, mode progress.Mode) error {
	w, err := consumer.NewWriter(conn, topic, consumer.WriterConfig{BatchSize: 5000, BatchBytes: 1 << 20, BatchTimeout: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	defer w.Close()
	if misplaced >= 0 {
		w.Balancer = misplacedBalancer(misplaced)
	}
	gen := eventgen.New(42)
	bar := progress.New(stderr, progress.Config{Label: "producing", Unit: "events", Total: int64(count), Mode: mode})
	defer bar.Finish()
	const chunk = 5000
	msgs := make([]kafka.Message, 0, chunk)
	for made := 0; made < count; {
		msgs = msgs[:0]
		for len(msgs) < chunk && made < count {
			v, _ := gen.Next(nil)
			msgs = append(msgs, kafka.Message{Key: eventgen.RecipientKey(v), Value: v})
			made++
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce: %w", consumer.ShortWriteError(err))
		}
		bar.Add(int64(len(msgs)))
	}
	return nil
}

// misplacedBalancer puts a message keyed by a generated address where
// consumer.PartitionOf puts its recipient (of the default account), or,
// for percent of the recipients (chosen by a hash of the address, so a
// recipient's events stay together), in the next partition.
func misplacedBalancer(percent int) kafka.Balancer {
	return kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
		n := len(partitions)
		norm, ok := schemas.NormalizeAddress(string(m.Key))
		if !ok {
			return partitions[0]
		}
		p := consumer.PartitionOf(schemas.DefaultAccountID, norm, n)
		h := fnv.New32a()
		h.Write(m.Key)
		if int(h.Sum32()%100) < percent {
			p = (p + 1) % n
		}
		return partitions[p]
	})
}
