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

func runBench(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "bench")
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
	misplacedList := fs.String("misplaced", "", "measure the worker once per share (percent, comma-separated, e.g. 0,100) of recipients whose events are in another partition than their suppression slice's (re-routed; docs/scaling.md), each on a topic of its own, in the same run; empty: events keyed by address with kafka-go's hash, as before")
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
	var misplaced []int
	if *misplacedList != "" {
		for _, f := range strings.Split(*misplacedList, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 || n > 100 {
				return usagef("--misplaced %q: want percentages from 0 to 100, comma-separated", *misplacedList)
			}
			misplaced = append(misplaced, n)
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
		OpsAddr: *opsAddr, Timeout: *timeout, Keep: *keep, Misplaced: misplaced, Stderr: env.stderr, Mode: progress.ModeFor(env.stderr, *quiet),
	}, env.stdout)
}
