package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/ops"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("worker", "consume delivery events from Kafka into ClickHouse (the sink group) and deliver them to webhooks (the webhook group)", runWorker)
}

func runWorker(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "worker")
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	cf := addClickHouseFlags(e)
	lf := addLogFlags(e)
	group := e.String("group", "BOUNCER_SINK_GROUP", "bouncer-sink", "consumer group of the sink")
	dlqTopic := e.String("dlq-topic", "BOUNCER_DLQ_TOPIC", "", "dead-letter topic (default: TOPIC.dlq)")
	changeTopic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "compacted topic of suppression list changes, which senders can mirror")
	geoDB := e.String("geoip-db", "BOUNCER_GEOIP_DB", "", "a MaxMind-format geoip database (.mmdb, e.g. GeoLite2-City.mmdb) to place the ip of opens and clicks (country, region) for /v3/geo/stats; empty: not placed")
	uaCache := e.Int("user-agent-cache", "BOUNCER_USER_AGENT_CACHE", 4096, "distinct user agents of opens and clicks remembered with their classification (browser, client, device)")
	partitions := e.Int("partitions", "BOUNCER_PARTITIONS", 4, "partitions of the event topic when the worker has to create it")
	opsAddr := e.String("ops-addr", "BOUNCER_OPS_ADDR", "127.0.0.1:9464", "address of the ops HTTP server (/healthz, /readyz, /metrics); empty disables it")
	maxMessages := e.Int("max-batch-messages", "BOUNCER_MAX_BATCH_MESSAGES", 10000, "most Kafka messages in one partition's batch; the batches the worker's partitions hand over at about the same time share one ClickHouse insert (up to 50,000 rows), so bigger batches mean fewer parts for ClickHouse to merge, and more memory")
	maxBytes := e.Int("max-batch-bytes", "BOUNCER_MAX_BATCH_BYTES", 8<<20, "most message bytes in one partition's batch")
	maxWait := e.Duration("max-wait", "BOUNCER_MAX_WAIT", 500*time.Millisecond, "longest a batch waits to fill after its first message (a fifth of it for the routed copies' topic)")
	maxMsgBytes := e.Int("max-message-bytes", "BOUNCER_MAX_MESSAGE_BYTES", 1<<20, "largest accepted Kafka message; larger ones are dead-lettered")
	maxSkew := e.Duration("max-event-skew", "BOUNCER_MAX_EVENT_SKEW", pipeline.DefaultMaxFutureSkew, "an event dated more than this after its Kafka message's time (or the worker's clock, if earlier) is dead-lettered as future_timestamp (0: 1h; negative: no bound)")
	session := e.Duration("session-timeout", "BOUNCER_SESSION_TIMEOUT", 10*time.Second, "Kafka group session timeout: how soon a dead worker's partitions move to the others")
	shutdown := e.Duration("shutdown-timeout", "BOUNCER_SHUTDOWN_TIMEOUT", 30*time.Second, "longest a graceful shutdown may take")
	retention := e.Int("retention-months", "BOUNCER_RETENTION_MONTHS", 0, "drop events and dead letters ingested more than this many months ago, daily (0 keeps everything)")
	rollupEvery := e.Duration("rollup-interval", "BOUNCER_ROLLUP_INTERVAL", 30*time.Second, "how often the sink builds the stats rollups of the days its batches touched (bouncer rollups update); 0 leaves it to bouncer rollups")
	migrate := e.Bool("migrate", "BOUNCER_MIGRATE", true, "apply ClickHouse migrations at start")
	rulesFile := e.String("rules", "BOUNCER_RULES", "", "operator bounce rules file, tried before the built-in rules")
	softHits := e.Int("soft-disabled-hits", "BOUNCER_SOFT_DISABLED_HITS", 2, "soft-bounce policy: this many disabled-mailbox bounces (or 4xx user unknown)...")
	softSpan := e.Duration("soft-disabled-span", "BOUNCER_SOFT_DISABLED_SPAN", 24*time.Hour, "...first and last at least this far apart, no delivery between, put the recipient on the bounce list")
	softFull := e.Duration("soft-full-for", "BOUNCER_SOFT_FULL_FOR", 30*24*time.Hour, "soft-bounce policy: a mailbox full this long with no delivery puts the recipient on the bounce list")
	softOn := e.Bool("soft-bounce-policy", "BOUNCER_SOFT_BOUNCE_POLICY", true, "apply the soft-bounce policy (one ClickHouse query per batch that holds such bounces)")
	indexMode := e.String("suppression-index", "BOUNCER_SUPPRESSION_INDEX", "slices", "how the worker holds the suppression lists its derived drops read: slices (only the slices of the change-log partitions its groups are assigned, loaded on assignment; the event topic and the change log need the same partition count) or full (every list, as the api)")
	reroute := e.Bool("reroute", "BOUNCER_REROUTE", true, "with --suppression-index=slices: copy the events that read or change a recipient's lists (processed, bounce, spamreport, unsubscribe, group_unsubscribe, group_resubscribe) and that a producer put in another partition than the recipient's slice to TOPIC.routed, where the holder of that slice stores and delivers them (docs/scaling.md); false: the worker loads those recipients' slices too. Every worker of a deployment needs the same setting: stop them all to change it")
	sinkOn := e.Bool("sink", "BOUNCER_RUN_SINK", true, "run the sink group")
	wf := addWebhookGroupFlags(e)
	ff := addForwardFlags(e)
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("worker takes no arguments; got %q", fs.Args())
	}
	log, err := lf.logger(env.stderr)
	if err != nil {
		return err
	}
	webhooksExplicit := false
	fs.Visit(func(f *flag.Flag) { webhooksExplicit = webhooksExplicit || f.Name == "webhooks" })
	webhooksOn := wf.enabled(webhooksExplicit)
	if !*sinkOn && !webhooksOn && !ff.enabled() {
		return usagef("nothing to run: --sink=false, the webhook group is off (--webhooks=false, or BOUNCER_SECRET_KEY is not set) and bounce forwarding is off")
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if *dlqTopic == "" {
		*dlqTopic = *kf.topic + ".dlq"
	}
	if *indexMode != "slices" && *indexMode != "full" {
		return usagef("--suppression-index %q: want slices or full", *indexMode)
	}
	if *retention < 0 {
		return usagef("--retention-months %d: want 0 (keep) or more", *retention)
	}
	classifier, err := loadClassifier(*rulesFile)
	if err != nil {
		return err
	}
	policy := pipeline.SoftBouncePolicy{DisabledHits: *softHits, DisabledSpan: *softSpan, FullFor: *softFull}
	if *softHits < 1 || *softSpan < 0 || *softFull <= 0 {
		return usagef("soft-bounce policy: --soft-disabled-hits must be at least 1 and the spans positive")
	}

	if *migrate {
		applied, err := clickhouse.Migrate(ctx, chCfg)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, a := range applied {
			log.Info("applied migration", "version", a.Version, "name", a.Name)
		}
	}
	store, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := consumer.EnsureTopic(ctx, conn, *kf.topic, *partitions); err != nil {
		return err
	}
	if err := consumer.EnsureTopic(ctx, conn, *dlqTopic, *partitions); err != nil {
		return err
	}
	dlq, err := consumer.NewDeadLetterWriter(conn, *dlqTopic)
	if err != nil {
		return err
	}
	defer dlq.Close()
	changes, err := consumer.OpenChangeLog(ctx, conn, *changeTopic, *partitions)
	if err != nil {
		return err
	}
	defer changes.Close()

	// The index of suppressed recipients, loaded from the change log before
	// consuming events, so processed events to suppressed recipients get
	// their dropped event from the first batch on.
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var index pipeline.Suppressions
	var catchUp func(context.Context) error
	var checks []ops.Check // nil when ready, else why not
	var router *pipeline.Router
	var copies *consumer.CopyWriter
	var routed []string // the routed topic, when re-routing
	if *indexMode == "full" {
		follower, err := consumer.FollowIndex(followCtx, conn, *changeTopic, reg, log)
		if err != nil || follower == nil {
			return err
		}
		index, catchUp = follower.Index, follower.CatchUp
	} else {
		// Each group holds the slices of its partitions (pipeline.SliceHolder):
		// loaded on assignment, dropped a while after revocation.
		sl, err := consumer.OpenSlices(followCtx, consumer.SlicesConfig{Conn: conn, Topic: *changeTopic, Logger: log, Registerer: reg})
		if err != nil {
			return err
		}
		if *reroute {
			if router, err = pipeline.NewRouter(*kf.topic, sl); err != nil {
				return err
			}
			rt := router.RoutedTopic()
			if err := consumer.EnsureRoutedTopic(ctx, conn, rt, sl.Partitions()); err != nil {
				return err
			}
			// Copies go to the partition numbered like the recipient's
			// slice: a routed topic with fewer partitions than the change
			// log (one grown without the other) would fail those batches
			// for ever.
			if n, err := consumer.TopicPartitions(ctx, conn, rt); err != nil {
				return err
			} else if n < sl.Partitions() {
				return fmt.Errorf("the routed topic %s has %d partitions, fewer than the change log %s's %d: grow it to the change log's count (kafka-topics.sh --alter --partitions; docs/scaling.md, Adding partitions)",
					rt, n, *changeTopic, sl.Partitions())
			}
			if copies, err = consumer.NewCopyWriter(conn, rt); err != nil {
				return err
			}
			routed = []string{rt}
			log.Info("re-routing events found in another partition than their recipient's slice", "routed_topic", rt, "partitions", sl.Partitions())
		} else if n, err := consumer.TopicPartitions(ctx, conn, *kf.topic); err == nil && n != sl.Partitions() {
			log.Warn("the event topic and the suppression change log have different partition counts: workers hold the slices of the recipients of every batch, not those of their partitions (docs/scaling.md)",
				"topic", *kf.topic, "partitions", n, "changelog", *changeTopic, "changelog_partitions", sl.Partitions())
		}
		index = sl
		checks = append(checks, sl.Loading)
	}

	// One set of consumer metrics for every group: the lag is labelled by
	// group and topic.
	consumerMetrics := consumer.NewMetrics(reg)
	var parts []ops.Service

	if *sinkOn {
		var history pipeline.History
		if *softOn {
			history = store
		}
		agents, err := enrich.NewAgents(*uaCache)
		if err != nil {
			return err
		}
		var geo *enrich.Geo
		if *geoDB != "" {
			if geo, err = enrich.OpenGeo(*geoDB); err != nil {
				return &usageError{err.Error()}
			}
			defer geo.Close()
		}
		handler, err := pipeline.NewHandler(pipeline.Config{
			Sink: store, Publisher: dlq, Classifier: classifier, MaxMessageBytes: *maxMsgBytes, MaxFutureSkew: *maxSkew,
			Suppressions: index, Changes: changes, CatchUp: catchUp, Route: router, Copies: copyWriter(copies),
			SoftBounces: policy, History: history, Agents: agents, Geo: geo,
			Logger: log, Metrics: pipeline.NewMetrics(reg),
		})
		if err != nil {
			return err
		}
		g, err := consumer.NewGroup(consumer.GroupConfig{
			Conn: conn, Topic: *kf.topic, Topics: routed, GroupID: *group,
			MaxBatchMessages: *maxMessages, MaxBatchBytes: *maxBytes, MaxWait: *maxWait,
			// The routed copies come in bursts while the source partitions'
			// batches are stored, and those partitions' next inserts wait
			// for the copies' (merged inserts): at MaxWait, half a second of
			// each round of batches in the ingest bench went to this wait.
			TopicsMaxWait: *maxWait / 5,
			HandleTimeout: min(*shutdown, 45*time.Second), SessionTimeout: *session,
			Logger: log, Metrics: consumerMetrics,
		}, handler)
		if err != nil {
			return &usageError{err.Error()}
		}
		checks = append(checks, func(context.Context) error {
			select {
			case <-g.Ready():
				return g.Waiting()
			default:
				return errors.New("sink consumer group not joined yet")
			}
		})
		parts = append(parts, ops.Func(g.Run))
		log.Info("sink group starting", "topic", *kf.topic, "group", *group, "dlq", *dlqTopic, "clickhouse", chCfg.Addr, "database", chCfg.Database)
	}
	if webhooksOn {
		// The webhook group derives dropped events from the same index as
		// the sink (shared in this process, so it sees this worker's own
		// list changes at once).
		delivery, ready, err := wf.build(ctx, conn, *kf.topic, *partitions, store, index, catchUp, router, classifier, *maxMsgBytes, reg, consumerMetrics, log)
		if err != nil {
			return err
		}
		checks, parts = append(checks, ready), append(parts, delivery)
	} else {
		log.Info("webhook group off (set BOUNCER_SECRET_KEY to run it, or --webhooks)")
	}
	if ff.enabled() {
		forwarding, err := ff.build(conn, *kf.topic, store, classifier, reg, consumerMetrics, log)
		if err != nil {
			return err
		}
		parts = append(parts, forwarding)
	}

	if *opsAddr != "" {
		srv, err := ops.Serve(*opsAddr, reg, append(checks, store.Ping), log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if *retention > 0 {
		go store.RunRetention(ctx, *retention, log)
	}
	if *sinkOn && *rollupEvery > 0 {
		go rollupLoop(ctx, store, *rollupEvery, log)
	}

	log.Info("worker started")
	err = ops.Run(ctx, *shutdown, log, parts...)
	var late *ops.ShutdownTimeout
	if !errors.As(err, &late) {
		log.Info("worker stopped")
	}
	return err
}

// copyWriter is w as a pipeline.CopyWriter (nil when not re-routing).
func copyWriter(w *consumer.CopyWriter) pipeline.CopyWriter {
	if w == nil {
		return nil
	}
	return w
}
