package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/ops"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/claims"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

func init() {
	register("api", "serve the HTTP API (SendGrid's v3 suppression, stats, activity, webhook and forwarding endpoints) and the dashboard", runAPI)
}

func runAPI(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "api")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	kf := addKafkaFlags(e)
	lf := addLogFlags(e)
	changeTopic := e.String("changelog-topic", "BOUNCER_CHANGELOG_TOPIC", "bouncer.suppressions", "compacted topic the workers' suppression index follows; API list changes are published there")
	publish := e.Bool("publish-changes", "BOUNCER_API_PUBLISH_CHANGES", true, "publish API list changes to the change-log topic (needs Kafka); without it workers learn of API deletes only after a restart")
	check := e.Bool("check", "BOUNCER_API_CHECK", true, "serve the batch check (POST /bouncer/v1/suppressions/check) from an in-memory copy of the lists, loaded from the change-log topic (needs Kafka)")
	listen := e.String("listen", "BOUNCER_API_ADDR", "127.0.0.1:8080", "address the API listens on, host:port")
	opsAddr := e.String("ops-addr", "BOUNCER_API_OPS_ADDR", "127.0.0.1:9465", "address of the ops HTTP server (/healthz, /readyz, /metrics), never the API's own; empty disables it")
	rateLimit := e.Int("rate-limit", "BOUNCER_API_RATE_LIMIT", 10, "requests per second per API key over the whole deployment (the burst is the same number)")
	replicas := e.Int("replicas", "BOUNCER_API_REPLICAS", 1, "number of bouncer api processes behind the load balancer: each allows 1/N of --rate-limit per key, so together they allow about --rate-limit when the balancer spreads each key's requests evenly (docs/production.md)")
	maxBody := e.Int("max-body-bytes", "BOUNCER_API_MAX_BODY_BYTES", 1<<20, "largest accepted request body")
	proxies := e.String("trusted-proxies", "BOUNCER_API_TRUSTED_PROXIES", "", "comma-separated addresses or CIDRs of reverse proxies in front of the API (e.g. 10.0.0.0/8): failed authentications from them count for the client their X-Forwarded-For names, not for the proxy")
	maxStats := e.Int("max-stats-queries", "BOUNCER_API_MAX_STATS_QUERIES", 8, "statistics queries (stats, bounce classification and dashboard routes) answered at once, a quarter of them for one account; others wait up to 15s, then 503")
	purgeEvery := e.Duration("bounce-purge-interval", "BOUNCER_BOUNCE_PURGE_INTERVAL", time.Hour,
		"how often this process carries out the accounts' bounce purge settings (/v3/mail_settings/bounce_purge); every replica may: they write the same removals; 0 disables it here")
	publicURL := e.String("public-url", "BOUNCER_API_PUBLIC_URL", "", "scheme and host clients reach the API at (e.g. https://bouncer.example.com), for the links it hands out (an activity download's presigned_url); default: each request's own host")
	maxDownloads := e.Int("max-downloads", "BOUNCER_API_MAX_DOWNLOADS", 2, "activity CSV downloads (POST /v3/messages/download) this process writes at once; more are 429")
	shutdown := e.Duration("shutdown-timeout", "BOUNCER_SHUTDOWN_TIMEOUT", 15*time.Second, "longest a graceful shutdown may take")
	wf := addWebhookFlags(e)
	claimsTopic := e.String("webhook-claims-topic", "BOUNCER_WEBHOOK_CLAIMS_TOPIC", claims.DefaultTopic,
		"topic that orders webhook creates, URL changes and deletes per account, so that the limits (5 per account, one URL each) "+
			"hold across API processes, and unsubscribe group creates, so that no two get one id (kept forever, never compacted, its partition count never changed)")
	useClaims := e.Bool("webhook-claims", "BOUNCER_WEBHOOK_CLAIMS", true, "decide the webhook limits and new unsubscribe group ids through --webhook-claims-topic (needs Kafka); "+
		"false decides them under a lock of this process, which holds only while one bouncer api runs")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("api takes no arguments; got %q", fs.Args())
	}
	if *rateLimit < 1 {
		return usagef("--rate-limit %d: want at least 1 request per second", *rateLimit)
	}
	if *replicas < 1 {
		return usagef("--replicas %d: want the number of bouncer api processes behind the load balancer (at least 1)", *replicas)
	}
	if *maxBody < 1 {
		return usagef("--max-body-bytes %d: want a positive size", *maxBody)
	}
	trusted, err := parsePrefixes(*proxies)
	if err != nil {
		return usagef("--trusted-proxies: %v", err)
	}
	if *maxStats < 1 {
		return usagef("--max-stats-queries %d: want at least 1", *maxStats)
	}
	if *opsAddr != "" && *opsAddr == *listen && !strings.HasSuffix(*listen, ":0") {
		return usagef("--ops-addr %s is the API's --listen address: metrics must not be served to tenants; pick another port", *opsAddr)
	}
	log, err := lf.logger(env.stderr)
	if err != nil {
		return err
	}
	whKeys, err := wf.keyring()
	if err != nil {
		return err
	}
	whGuard, err := wf.guard()
	if err != nil {
		return err
	}
	if whKeys == nil {
		log.Warn("webhook routes answer 503: BOUNCER_SECRET_KEY is not set (make a key with `openssl rand -base64 32`)")
	}
	chCfg := cf.config()
	if err := chCfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	store, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	subs := subscription.NewService(store, whKeys, whGuard, kafkatier.NewReplayer(store, kf.conn()))
	switch {
	case *useClaims && whKeys == nil && !*check && !*publish:
		// This API runs without Kafka.
		log.Warn("--check=false, --publish-changes=false and no BOUNCER_SECRET_KEY: new unsubscribe group ids are decided within this process only; run one bouncer api")
	case *useClaims:
		conn := kf.conn()
		if err := conn.Validate(); err != nil {
			return &usageError{err.Error() + " (webhook limits and unsubscribe group ids need Kafka; or --webhook-claims=false with one bouncer api)"}
		}
		cl, err := claims.Open(ctx, conn, *claimsTopic, claims.DefaultPartitions)
		if err != nil {
			return fmt.Errorf("webhook claims topic %s: %w (webhook limits and unsubscribe group ids need Kafka: set KAFKA_BROKERS; or --webhook-claims=false with one bouncer api)", *claimsTopic, err)
		}
		defer cl.Close()
		if whKeys != nil {
			subs.UseClaims(cl)
		}
		store.UseGroupLog(cl)
	default:
		log.Warn("--webhook-claims=false: the webhook limits (5 per account, one URL each) hold within this process only, and new unsubscribe group ids are decided by it alone; run one bouncer api")
	}
	changes, closeChanges, err := openChangeLog(ctx, kf, *changeTopic, *publish)
	if err != nil {
		return err
	}
	defer closeChanges()
	as := newAPIStore(store, changes)
	var checker api.Checker
	if *check {
		conn := kf.conn()
		if err := conn.Validate(); err != nil {
			return &usageError{err.Error() + " (or --check=false)"}
		}
		if err := consumer.EnsureChangeLog(ctx, conn, *changeTopic, 4); err != nil {
			return err
		}
		index, err := consumer.LoadIndex(ctx, conn, *changeTopic, reg, log)
		if err != nil || index == nil {
			return err
		}
		checker = index
	}
	cfg := api.Config{
		Store: as, Stats: store, Categories: store, Downloads: store, MaxDownloads: *maxDownloads, PublicURL: *publicURL, Context: ctx, GeoIP: env.getenv("BOUNCER_GEOIP_DB") != "", Activity: store, Keys: store, Logger: log, Checker: checker,
		Privacy: as.Service, Forwarding: store, BouncePurge: store, Groups: as.Service, Webhooks: subs, WebhookOps: subs, WebhookTester: webhook.Tester{Guard: whGuard}, Dashboard: store,
		Sessions:  store,
		RateLimit: float64(*rateLimit), Replicas: *replicas, MaxBodyBytes: int64(*maxBody), MaxStatsQueries: *maxStats, TrustedProxies: trusted,
		Metrics:     api.NewRequestMetrics(reg),
		Unavailable: clickhouse.Unavailable,
	}
	if err := cfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", *listen, err)
	}
	if *opsAddr != "" {
		opsSrv, err := ops.Serve(*opsAddr, reg, []ops.Check{store.Ping}, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer opsSrv.Close()
	}
	srv := &http.Server{
		Handler:           api.NewServer(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	if *purgeEvery > 0 {
		purger := &suppression.Purger{Service: as.Service, Settings: store, Interval: *purgeEvery, Log: log}
		pctx, stopPurge := context.WithCancel(ctx)
		purged := make(chan struct{})
		go func() { defer close(purged); purger.Run(pctx) }()
		defer func() { stopPurge(); <-purged }()
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("api listening", "addr", ln.Addr().String(), "clickhouse", chCfg.Addr, "database", chCfg.Database)
	select {
	case err := <-done:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	log.Info("api shutting down", "timeout", *shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	log.Info("api stopped")
	return nil
}

// newAPIStore returns the API's store over st; changes (nil: none)
// announces list changes to the workers and mirroring senders.
func newAPIStore(st *clickhouse.Store, changes suppression.Publisher) api.ListStore {
	return api.ListStore{Service: suppression.NewService(st, changes, enrich.MustNew()), Counts: st}
}

// openChangeLog returns a publisher of list changes for commands that
// change lists outside the worker, and a func that closes it; with publish
// false, no publisher (nil) and nothing to close.
func openChangeLog(ctx context.Context, kf *kafkaFlags, topic string, publish bool) (suppression.Publisher, func(), error) {
	if !publish {
		return nil, func() {}, nil
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return nil, nil, &usageError{err.Error() + " (or --publish-changes=false)"}
	}
	cw, err := consumer.OpenChangeLog(ctx, conn, topic, 4)
	if err != nil {
		return nil, nil, err
	}
	return cw, func() { cw.Close() }, nil
}

// parsePrefixes reads a comma-separated list of CIDRs and addresses (an
// address is its own /32 or /128).
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR: write e.g. 10.0.0.5 or 10.0.0.0/8", f)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
