package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/ops"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/subscription"
)

// webhookGroupFlags configure the webhook group of the worker.
type webhookGroupFlags struct {
	getenv                                    func(string) string
	keys                                      *webhookFlags
	on                                        *bool
	onSet                                     bool
	group, prefix, schedule                   *string
	batchEvents, queueEvents, global, flight  *int
	partitions                                *int
	timeout, batchWait, disableAfter, refresh *time.Duration
	breakerOpen, queueTimeout, slowAfter      *time.Duration
}

func addWebhookGroupFlags(e *envFlags) *webhookGroupFlags {
	return &webhookGroupFlags{
		getenv: e.getenv,
		keys:   addWebhookFlags(e),
		on:     e.Bool("webhooks", "BOUNCER_RUN_WEBHOOKS", true, "run the webhook group (default: on when BOUNCER_SECRET_KEY is set)"),
		group:  e.String("webhook-group", "BOUNCER_WEBHOOK_GROUP", "bouncer-webhooks", "consumer group of webhook delivery; its retry tiers use GROUP.retry.<delay>"),
		prefix: e.String("webhook-topic-prefix", "BOUNCER_WEBHOOK_TOPIC_PREFIX", "bouncer.webhooks", "prefix of the webhook retry-tier topics (PREFIX.retry.5s, ...) and dead-letter topic (PREFIX.dlq)"),
		schedule: e.String("webhook-retry-schedule", "BOUNCER_WEBHOOK_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,14h,20h,24h",
			"waits before the 2nd, 3rd, ... attempt of a failed batch (each a retry-tier topic; jittered by 10%, longer when the endpoint sends Retry-After); a batch is given up after the last"),
		timeout:      e.Duration("webhook-timeout", "BOUNCER_WEBHOOK_TIMEOUT", 10*time.Second, "bound of one POST to an endpoint"),
		batchEvents:  e.Int("webhook-batch-events", "BOUNCER_WEBHOOK_BATCH_EVENTS", 100, "most events in one webhook request"),
		batchWait:    e.Duration("webhook-batch-wait", "BOUNCER_WEBHOOK_BATCH_WAIT", 200*time.Millisecond, "longest a webhook batch waits to fill"),
		queueEvents:  e.Int("webhook-queue-events", "BOUNCER_WEBHOOK_QUEUE_EVENTS", 10000, "events one endpoint may have waiting on this worker; more are parked in the first retry tier"),
		global:       e.Int("webhook-max-queued-events", "BOUNCER_WEBHOOK_MAX_QUEUED_EVENTS", 200000, "events all endpoints may have waiting on this worker (bounds its memory)"),
		flight:       e.Int("webhook-max-in-flight", "BOUNCER_WEBHOOK_MAX_IN_FLIGHT", 16, "most concurrent requests to one endpoint (the limit adapts below it: halved on 429, 5xx and timeouts)"),
		queueTimeout: e.Duration("webhook-queue-timeout", "BOUNCER_WEBHOOK_QUEUE_TIMEOUT", 2*time.Second, "a batch waiting longer than this for a free request slot is parked in the first retry tier"),
		slowAfter:    e.Duration("webhook-slow-after", "BOUNCER_WEBHOOK_SLOW_AFTER", time.Second, "an attempt still running after this parks a copy of its batch in the retry tier (due after the attempt's deadline) so a hanging endpoint does not hold back the others"),
		breakerOpen:  e.Duration("webhook-breaker-open", "BOUNCER_WEBHOOK_BREAKER_OPEN", 30*time.Second, "after 5 failures (or 2 timeouts) in a row an endpoint's circuit opens for this long; meanwhile its batches are parked, not sent, then one trial goes through"),
		disableAfter: e.Duration("webhook-disable-after", "BOUNCER_WEBHOOK_DISABLE_AFTER", 72*time.Hour, "disable an endpoint failing this long without a single success"),
		refresh:      e.Duration("webhook-refresh", "BOUNCER_WEBHOOK_REFRESH", 2*time.Second, "how often subscriptions are re-read from ClickHouse"),
		partitions:   e.Int("webhook-partitions", "BOUNCER_WEBHOOK_PARTITIONS", 0, "partitions of the retry-tier and dead-letter topics when the worker creates them (0: as --partitions)"),
	}
}

// enabled: --webhooks (or its variable) when given, else whether a keyring
// is set.
func (f *webhookGroupFlags) enabled(explicit bool) bool {
	if explicit || f.getenv("BOUNCER_RUN_WEBHOOKS") != "" {
		return *f.on
	}
	return f.keys.key.v != ""
}

// build checks the flags and builds the webhook delivery (its retry-tier
// topics created when missing); the worker runs it and shuts it down.
func (f *webhookGroupFlags) build(ctx context.Context, conn consumer.Conn, topic string, partitions int, store *clickhouse.Store,
	drops pipeline.Suppressions, catchUp func(context.Context) error, route *pipeline.Router, classifier *enrich.Classifier, maxMessageBytes int, reg *prometheus.Registry, cm *consumer.Metrics, log *slog.Logger) (ops.Service, ops.Check, error) {
	keys, err := f.keys.keyring()
	if err != nil {
		return nil, nil, err
	}
	if keys == nil {
		return nil, nil, usagef("the webhook group needs BOUNCER_SECRET_KEY (or --secret-key): the keyring the api seals signing secrets with; or run without webhooks: --webhooks=false")
	}
	guard, err := f.keys.guard()
	if err != nil {
		return nil, nil, err
	}
	delays, err := webhook.ParseDelays(*f.schedule)
	if err != nil {
		return nil, nil, usagef("--webhook-retry-schedule: %v", err)
	}
	switch {
	case *f.timeout <= 0 || *f.batchWait <= 0 || *f.disableAfter <= 0 || *f.refresh <= 0 || *f.breakerOpen <= 0 || *f.queueTimeout <= 0 || *f.slowAfter <= 0:
		return nil, nil, usagef("webhook durations (--webhook-timeout, -batch-wait, -disable-after, -refresh, -breaker-open, -queue-timeout, -slow-after) must be positive")
	case *f.batchEvents < 1 || *f.queueEvents < *f.batchEvents || *f.global < *f.queueEvents || *f.flight < 1:
		return nil, nil, usagef("webhook bounds: want --webhook-batch-events >= 1, --webhook-queue-events >= it, --webhook-max-queued-events >= that, --webhook-max-in-flight >= 1")
	}
	if max(*f.queueTimeout, *f.slowAfter)+*f.batchWait > 30*time.Second {
		return nil, nil, usagef("--webhook-batch-wait plus the larger of --webhook-queue-timeout and --webhook-slow-after must stay under 30s (a consumed batch must be delivered or parked within the group's 45s handle timeout)")
	}
	parts := *f.partitions
	if parts <= 0 {
		parts = partitions
	}
	log = log.With("group", *f.group)
	topics := kafkatier.Topics{Prefix: *f.prefix, Delays: delays}
	dc := webhook.Config{
		Registry: subscription.NewRegistry(store, keys), Client: guard.Client(*f.timeout),
		Drops: drops, CatchUp: catchUp, Route: route, Classifier: classifier, Health: store,
		Schedule:       webhook.Schedule{Delays: delays},
		MaxBatchEvents: *f.batchEvents, MaxBatchWait: *f.batchWait, AttemptTimeout: *f.timeout,
		QueueTimeout: *f.queueTimeout, SlowAfter: *f.slowAfter, QueueEvents: *f.queueEvents, GlobalEvents: *f.global,
		MaxInFlight: *f.flight, BreakerOpen: *f.breakerOpen, RefreshEvery: *f.refresh, DisableAfter: *f.disableAfter,
		Logger: log, Metrics: webhook.NewMetrics(reg),
	}
	d, err := kafkatier.NewDelivery(ctx, kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Group: *f.group, Topics: topics, Partitions: parts,
		Dispatcher: dc, DeliveryLog: store, Failed: store, MaxMessageBytes: maxMessageBytes,
		MaxBatchMessages: 20000, MaxWait: 200 * time.Millisecond, ConsumerMetrics: cm, Logger: log,
	})
	var bad *kafkatier.ConfigError
	if errors.As(err, &bad) {
		return nil, nil, &usageError{err.Error()}
	}
	if err != nil {
		return nil, nil, err
	}
	log.Info("webhook delivery: receivers", "allow_nets", *f.keys.allow)
	return d, d.Ready, nil
}
