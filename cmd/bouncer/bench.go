package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/internal/benchrun"
	"github.com/bouncer-mail/bouncer/internal/progress"
)

func init() {
	register("bench", "measure end-to-end ingest against ClickHouse's own Kafka engine on the same events", runBench)
}

const benchUsage = `
Usage: bouncer bench [flags]

Produces --count single-object events (realistic, generated) to a fresh topic,
then measures, one after the other on the same machine, --runs times:

  bouncer   a 'bouncer worker' process (this binary) consuming the topic into
            ClickHouse with every feature on: decode, classify, suppression
            lookups and derived drops, the change log, the soft-bounce policy,
            recipient history, dead letters; exactly once.
  peer      ClickHouse's Kafka table engine with a materialized view into an
            equivalent MergeTree table, JSONEachRow with unknown fields
            skipped, reading from the earliest offset, once per number of
            consumers in --peer-consumers (at most one per partition).

Each contender is timed from its start until count() of its table reaches
--count, with its own consumer group. Per contender and run it prints:

  events/s       --count over the time from start
  steady/s       rows stored between 10% and 90% of --count, over that time
  first rows     time from start to the first rows in its table
  first commit   time from start to its group's first offset commit
  CPU s/M        CPU seconds per million events, from /proc, of the worker
                 process, the ClickHouse server and the Kafka broker during
                 the contender's run (the ClickHouse server does bouncer's
                 inserts and merges, and all of the peer's work; the broker
                 serves both), and their total
  peak RSS       the worker's (VmHWM), and the ClickHouse server's highest
                 resident size sampled during the run

then the medians over the runs and the ratio of bouncer to the peer's best
number of consumers. Between contenders it waits (up to 30 s) for the
server's merges to finish, so one contender's merges are not charged to the
next. The server and broker CPU is read only when they run on this machine
(found by their listening ports). Use a ClickHouse and Kafka of your own
(make bench starts a dedicated local instance); the bench creates databases
bench_bouncer_* and bench_peer_* and drops them after each run.

  make bench                        # RUNS=3 by default
  bouncer bench --count 1000000 --partitions 4 --runs 3
  bouncer bench --worker-ops-addr 127.0.0.1:9464   # then go tool pprof http://127.0.0.1:9464/debug/pprof/profile
  bouncer bench --worker-bin old/bouncer --peer-consumers 0   # an older build's worker, same harness
`

func runBench(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "bench", benchUsage)
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	cf := addClickHouseFlags(e)
	count := fs.Int("count", 1_000_000, "events to produce and ingest")
	partitions := fs.Int("partitions", 4, "partitions of the bench topic")
	runs := fs.Int("runs", 1, "how many times to measure every contender (on the same topic)")
	peerList := fs.String("peer-consumers", "1,2,4", "numbers of Kafka engine consumers to measure the peer with (each at most --partitions; 0: bouncer only)")
	opsAddr := fs.String("worker-ops-addr", "", "ops address of the bench's worker, for /debug/pprof (empty: none)")
	timeout := fs.Duration("timeout", 15*time.Minute, "give up on a contender after this long")
	keep := fs.Bool("keep", false, "keep the bench databases and topic")
	quiet := fs.Bool("quiet", false, "no progress on stderr (the bench's own step lines stay)")
	workerBin := fs.String("worker-bin", "", "measure the worker of this bouncer binary (for example an older build) instead of this one's")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if *count < 1 || *partitions < 1 || *runs < 1 {
		return usagef("--count, --partitions and --runs must be at least 1")
	}
	var consumers []int
	if *peerList != "0" {
		for _, f := range strings.Split(*peerList, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return usagef("--peer-consumers %q: want numbers of at least 1, comma-separated (or 0: no peer)", *peerList)
			}
			if n <= *partitions && !slices.Contains(consumers, n) {
				consumers = append(consumers, n)
			}
		}
		if len(consumers) == 0 {
			consumers = []int{*partitions}
		}
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
	if *workerBin != "" {
		self = *workerBin
	}
	return benchrun.Run(ctx, benchrun.Config{
		Conn: conn, ClickHouse: chCfg, Worker: self, Count: *count, Partitions: *partitions, Runs: *runs, PeerConsumers: consumers,
		OpsAddr: *opsAddr, Timeout: *timeout, Keep: *keep, Stderr: env.stderr, Mode: progress.ModeFor(env.stderr, *quiet),
	}, env.stdout)
}
