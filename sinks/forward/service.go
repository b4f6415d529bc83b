package forward

import (
	"context"
	"fmt"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/ops"
)

// Service is one worker's bounce forwarding on Kafka: the forwarding
// consumer group and its Forwarder. It owns their order of stopping
// (Shutdown), so the worker and the tests run it the same way.
type Service struct {
	fw    *Forwarder
	group *consumer.Group
	log   func(msg string, args ...any)

	intake     context.Context // the group runs on it; Shutdown ends it
	stopIntake context.CancelFunc
	once       ops.Once
}

var _ ops.Service = (*Service)(nil)

// NewService checks cfg and the group's config and builds the forwarding
// group (gc.Topic is the events topic, gc.GroupID the forwarding group;
// the group's handler is the Forwarder). Run runs it.
func NewService(cfg Config, gc consumer.GroupConfig) (*Service, error) {
	fw, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if gc.Logger == nil {
		gc.Logger = fw.log
	}
	g, err := consumer.NewGroup(gc, fw)
	if err != nil {
		return nil, err
	}
	s := &Service{fw: fw, group: g, log: fw.log.Info}
	s.intake, s.stopIntake = context.WithCancel(context.Background())
	return s, nil
}

// Forwarder is the service's handler (for its metrics and tests).
func (s *Service) Forwarder() *Forwarder { return s.fw }

// Run forwards until Shutdown is called or ctx ends, then stops in order:
//
//  1. intake: the group stops fetching; sends waiting to retry give up at
//     once (StopRetrying), so a dead relay cannot hold the shutdown, and
//     their batch is not committed (it is redelivered to the group's next
//     member); a batch being handled gets the group's HandleTimeout;
//  2. the group commits what was handled and leaves;
//  3. the pending digests are sent (bounded by Config.FlushTimeout).
//
// Relay connections are per send, so nothing is left to close. It returns
// the group's error (nil after a clean stop). Run is called once.
func (s *Service) Run(ctx context.Context) error {
	if err := s.once.Begin(); err != nil {
		return fmt.Errorf("bounce forwarding: %w", err)
	}
	defer s.once.End()
	defer context.AfterFunc(ctx, s.stopIntake)()
	cfg := s.fw.cfg
	s.log("bounce forwarding started", "relay", cfg.Relay.Addr, "tls", cfg.Relay.TLS,
		"from", cfg.From, "rate", fmt.Sprintf("%d/%s", cfg.RateLimit, cfg.RateWindow))
	err := s.fw.serve(s.intake, s.group.Run)
	s.log("bounce forwarding stopped")
	return err
}

// Shutdown stops the forwarding (see Run for the order) and waits until it
// stopped or ctx ends; then it returns ctx's error, and the batches not
// committed yet are redelivered to the group's next member. It may be
// called any number of times, before or after Run.
func (s *Service) Shutdown(ctx context.Context) error {
	s.stopIntake()
	if err := s.once.Wait(ctx, nil); err != nil {
		return fmt.Errorf("bounce forwarding: not stopped in time: %w", err)
	}
	return nil
}
