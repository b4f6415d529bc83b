package kafkatier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/ops"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
)

// DeliveryConfig configures a worker's webhook delivery.
type DeliveryConfig struct {
	Conn consumer.Conn
	// Topic is the events topic; Group the webhook group's id (its tiers
	// and dead letters are consumed by groups named after it). Required.
	Topic, Group string
	// Topics are the retry tiers and dead-letter topic; Partitions the
	// partitions they are created with when missing (at least 1).
	Topics     Topics
	Partitions int
	// Dispatcher configures the dispatcher; Delivery sets its Parker (this
	// package's Writer) and Log (a LogWriter on DeliveryLog).
	Dispatcher webhook.Config
	// DeliveryLog stores the delivery log; Failed the given-up batches.
	// Required.
	DeliveryLog webhook.DeliveryStore
	Failed      FailedStore
	// MaxMessageBytes bounds one event message (0: the decoder's default).
	MaxMessageBytes int
	// MaxBatchMessages and MaxWait bound one consumed batch of events;
	// defaults 20000 and 200ms.
	MaxBatchMessages int
	MaxWait          time.Duration
	// ConsumerMetrics are the consumer groups' metrics (nil: unregistered
	// ones); Logger is optional.
	ConsumerMetrics *consumer.Metrics
	Logger          *slog.Logger
}

// Delivery is one worker's webhook delivery on Kafka: the webhook group
// consuming the events topic, the retry tiers, the dead letters' copy into
// the failed store, the dispatcher and its delivery log. It owns their
// order of stopping (Shutdown), so the worker, the tests and the benchmark
// run it the same way.
type Delivery struct {
	cfg    DeliveryConfig
	d      *webhook.Dispatcher
	logw   *webhook.LogWriter
	group  *consumer.Group
	parker *Writer

	intake     context.Context // the feeds run on it; Shutdown ends it
	stopIntake context.CancelFunc
	once       ops.Once
}

// ConfigError is NewDelivery's error for a configuration it refuses
// (before it touches Kafka).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// NewDelivery builds the delivery and creates the tier topics that are
// missing; Run runs it. A configuration it refuses is a *ConfigError.
func NewDelivery(ctx context.Context, cfg DeliveryConfig) (*Delivery, error) {
	switch {
	case cfg.Topic == "" || cfg.Group == "":
		return nil, &ConfigError{errors.New("webhook delivery: the events topic and the group id are required")}
	case cfg.DeliveryLog == nil || cfg.Failed == nil:
		return nil, &ConfigError{errors.New("webhook delivery: a delivery log store and a failed-batches store are required")}
	case cfg.Partitions < 1:
		return nil, &ConfigError{fmt.Errorf("webhook delivery: partitions %d: want at least 1", cfg.Partitions)}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dispatcher.Metrics == nil {
		cfg.Dispatcher.Metrics = webhook.NewMetrics(nil)
	}
	if cfg.MaxBatchMessages <= 0 {
		cfg.MaxBatchMessages = 20000
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 200 * time.Millisecond
	}
	parker, err := NewWriter(cfg.Conn, cfg.Topics)
	if err != nil {
		return nil, &ConfigError{err}
	}
	s := &Delivery{cfg: cfg, parker: parker}
	s.logw = webhook.NewLogWriter(cfg.DeliveryLog, 100_000, 10_000, time.Second, cfg.Logger, cfg.Dispatcher.Metrics)
	dc := cfg.Dispatcher
	dc.Parker, dc.Log = parker, s.logw
	if dc.Logger == nil {
		dc.Logger = cfg.Logger
	}
	if s.d, err = webhook.New(dc); err != nil {
		parker.Close()
		return nil, &ConfigError{err}
	}
	var routed []string
	if dc.Route != nil {
		routed = []string{dc.Route.RoutedTopic()}
	}
	s.group, err = consumer.NewGroup(consumer.GroupConfig{
		Conn: cfg.Conn, Topic: cfg.Topic, Topics: routed, GroupID: cfg.Group,
		MaxBatchMessages: cfg.MaxBatchMessages, MaxWait: cfg.MaxWait,
		Logger: cfg.Logger, Metrics: cfg.ConsumerMetrics,
	}, s.d.EventHandler(cfg.MaxMessageBytes))
	if err != nil {
		parker.Close()
		return nil, &ConfigError{err}
	}
	if err := Ensure(ctx, cfg.Conn, cfg.Topics, cfg.Partitions); err != nil {
		parker.Close()
		return nil, err
	}
	s.intake, s.stopIntake = context.WithCancel(context.Background())
	return s, nil
}

// Ready says whether the webhook group joined and the subscriptions were
// read (nil: ready).
func (s *Delivery) Ready(context.Context) error {
	select {
	case <-s.group.Ready():
		if s.d.Ready() {
			return nil
		}
	default:
	}
	return errors.New("webhook group not joined yet or webhook subscriptions not read yet")
}

// Run consumes and delivers until Shutdown is called or ctx ends (a feed
// that fails leaves the others running), then stops in order: the feeds (the event group, the tiers, the
// dead letters) stop taking batches and commit what was delivered or
// parked; the dispatcher delivers or parks what it was handed and the log
// writer writes its rows; the parking writer is flushed and closed. It
// returns the feeds' joined errors. Run is called once.
func (s *Delivery) Run(ctx context.Context) error {
	if err := s.once.Begin(); err != nil {
		return fmt.Errorf("webhook delivery: %w", err)
	}
	defer s.once.End()
	stop := context.AfterFunc(ctx, s.stopIntake)
	defer stop()
	cfg := s.cfg
	tiers := func(ctx context.Context) error {
		return RunTiers(ctx, TierConfig{Conn: cfg.Conn, Topics: cfg.Topics, Group: cfg.Group, Logger: cfg.Logger, Metrics: cfg.Dispatcher.Metrics}, s.d)
	}
	deadLetters := func(ctx context.Context) error {
		return RunDeadLetters(ctx, DeadLetterConfig{Conn: cfg.Conn, Topics: cfg.Topics, Group: cfg.Group, Logger: cfg.Logger, Metrics: cfg.ConsumerMetrics}, cfg.Failed)
	}
	cfg.Logger.Info("webhook delivery started", "topic", cfg.Topic, "tiers", strings.Join(cfg.Topics.All(), ","))
	err := s.d.Serve(s.intake, s.logw, s.group.Run, tiers, deadLetters)
	if cerr := s.parker.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close the retry-tier writer: %w", cerr))
	}
	cfg.Logger.Info("webhook delivery stopped")
	return err
}

// Shutdown stops the delivery (see Run for the order) and waits until it
// stopped or ctx ends; then it returns ctx's error, and the batches not
// committed yet are redelivered to the group's next member. It may be
// called any number of times, before or after Run.
func (s *Delivery) Shutdown(ctx context.Context) error {
	s.stopIntake()
	if err := s.once.Wait(ctx, func() { s.parker.Close() }); err != nil {
		return fmt.Errorf("webhook delivery: not stopped in time: %w", err)
	}
	return nil
}
