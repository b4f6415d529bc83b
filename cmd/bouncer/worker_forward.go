package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/forward"
)

// forwardFlags configure the bounce forwarding group of the worker.
type forwardFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string

	on                                     *bool
	relay, user, password, auth, tlsMode   *string
	caFile, from, group, rate              *string
	timeout, refresh, giveUp, shutdownWait *time.Duration
	maxAge                                 *time.Duration
	blocks                                 *bool
}

func addForwardFlags(e *envFlags) *forwardFlags {
	return &forwardFlags{
		fs: e.fs, getenv: e.getenv,
		on:       e.Bool("forward", "BOUNCER_FORWARD", false, "run the bounce forwarding group (default: on when --smtp-relay is set)"),
		relay:    e.String("smtp-relay", "BOUNCER_SMTP_RELAY", "", "SMTP relay for forwarded bounces, host:port (587 with starttls, 465 with tls)"),
		user:     e.String("smtp-user", "BOUNCER_SMTP_USER", "", "SMTP user name (empty: no AUTH)"),
		password: e.String("smtp-password", "BOUNCER_SMTP_PASSWORD", "", "SMTP password"),
		auth:     e.String("smtp-auth", "BOUNCER_SMTP_AUTH", "", "SMTP AUTH mechanism: plain, login, cram-md5 or none (default plain when --smtp-user is set)"),
		tlsMode:  e.String("smtp-tls", "BOUNCER_SMTP_TLS", "starttls", "TLS to the relay: starttls (required after EHLO), tls (from the first byte) or none"),
		caFile:   e.String("smtp-ca-file", "BOUNCER_SMTP_CA_FILE", "", "PEM file of extra CA certificates the relay's certificate may chain to (beside the system's)"),
		timeout:  e.Duration("smtp-timeout", "BOUNCER_SMTP_TIMEOUT", 30*time.Second, "bound of one delivery attempt (connect, TLS, AUTH, transaction)"),
		from:     e.String("forward-from", "BOUNCER_FORWARD_FROM", "", "sender of forwarded bounces, e.g. bounces@example.com or \"Bouncer <bounces@example.com>\""),
		group:    e.String("forward-group", "BOUNCER_FORWARD_GROUP", "bouncer-forward", "consumer group of the bounce forwarder"),
		rate:     e.String("forward-rate", "BOUNCER_FORWARD_RATE", "10/1m", "reports per account per window, N/WINDOW (e.g. 10/1m, 100/1h); more bounces go into a digest at the window's end"),
		maxAge:   e.Duration("forward-max-age", "BOUNCER_FORWARD_MAX_AGE", 6*time.Hour, "skip bounces whose event time is older than this (a new --forward-group reads the topic from its start)"),
		blocks:   e.Bool("forward-blocks", "BOUNCER_FORWARD_BLOCKS", false, "forward blocks (bounces of type blocked) too"),
		refresh:  e.Duration("forward-refresh", "BOUNCER_FORWARD_REFRESH", 10*time.Second, "how often the forwarding settings are re-read from ClickHouse"),
		giveUp:   e.Duration("forward-give-up", "BOUNCER_FORWARD_GIVE_UP", 15*time.Minute, "how long a report is retried after transient failures before it is dropped (logged and counted)"),
		shutdownWait: e.Duration("forward-flush-timeout", "BOUNCER_FORWARD_FLUSH_TIMEOUT", 20*time.Second,
			"on shutdown, how long pending digests may take to send"),
	}
}

// enabled reports whether the forwarding group should run: --forward (or
// BOUNCER_FORWARD) when given, else whether a relay is set.
func (f *forwardFlags) enabled() bool {
	explicit := f.getenv("BOUNCER_FORWARD") != ""
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "forward" {
			explicit = true
		}
	})
	if explicit {
		return *f.on
	}
	return *f.relay != ""
}

// config checks the flags and builds the forwarder's config (without the
// settings store, classifier, logger and metrics).
func (f *forwardFlags) config() (forward.Config, error) {
	if *f.relay == "" {
		return forward.Config{}, usagef("bounce forwarding needs an SMTP relay: set --smtp-relay host:port (or BOUNCER_SMTP_RELAY), or --forward=false")
	}
	if *f.from == "" {
		return forward.Config{}, usagef("bounce forwarding needs a sender: set --forward-from bounces@your-domain (or BOUNCER_FORWARD_FROM)")
	}
	if *f.group == "" {
		return forward.Config{}, usagef("--forward-group is empty")
	}
	limit, window, err := forward.ParseRate(*f.rate)
	if err != nil {
		return forward.Config{}, usagef("--forward-rate: %v", err)
	}
	if *f.timeout <= 0 || *f.refresh <= 0 || *f.giveUp <= 0 || *f.shutdownWait <= 0 || *f.maxAge <= 0 {
		return forward.Config{}, usagef("--smtp-timeout, --forward-refresh, --forward-give-up, --forward-flush-timeout and --forward-max-age must be positive")
	}
	var roots *x509.CertPool
	if *f.caFile != "" {
		pem, err := os.ReadFile(*f.caFile)
		if err != nil {
			return forward.Config{}, usagef("--smtp-ca-file: %v", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return forward.Config{}, usagef("--smtp-ca-file %s: no PEM certificate in it", *f.caFile)
		}
	}
	cfg := forward.Config{
		Relay: forward.Relay{
			Addr: *f.relay, Username: *f.user, Password: *f.password, Auth: *f.auth, TLS: *f.tlsMode,
			RootCAs: roots, Timeout: *f.timeout,
		},
		From: *f.from, ForwardBlocks: *f.blocks, RefreshEvery: *f.refresh,
		RateLimit: limit, RateWindow: window, GiveUpAfter: *f.giveUp, FlushTimeout: *f.shutdownWait, MaxAge: *f.maxAge,
	}
	return cfg, nil
}

// build validates the flags and builds the forwarding group (nil with
// forwarding off: enabled() false); the worker runs it and shuts it down.
func (f *forwardFlags) build(conn consumer.Conn, topic string, store *clickhouse.Store,
	classifier *enrich.Classifier, reg *prometheus.Registry, cm *consumer.Metrics, log *slog.Logger) (*forward.Service, error) {
	if !f.enabled() {
		return nil, nil
	}
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	if store == nil || classifier == nil {
		return nil, errors.New("bounce forwarding: a ClickHouse store and a classifier are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("group", *f.group, "topic", topic)
	cfg.Settings, cfg.Classifier, cfg.Logger = store, classifier, log
	if reg != nil {
		cfg.Metrics = forward.NewMetrics(reg)
	}
	// cm is the worker's consumer metrics (labelled by group); nil: unregistered ones.
	svc, err := forward.NewService(cfg, consumer.GroupConfig{
		Conn: conn, Topic: topic, GroupID: *f.group,
		MaxBatchMessages: 1000, MaxWait: 500 * time.Millisecond,
		Logger: log, Metrics: cm,
	})
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	return svc, nil
}
