// Package webhook delivers events to the URLs customers subscribe: matched
// per subscription, batched per endpoint in SendGrid's format, signed, sent
// with retries parked in Kafka delay topics, isolated per endpoint.
//
// # Guarantees
//
// At least once. Dispatcher.EventHandler, driven by the webhook consumer
// group, reports a consumed batch done (so the group commits it, in
// offset order after every earlier batch) only when every event of the
// batch that matched an active subscription of its account is either in
// a batch the endpoint answered with 2xx, or in Kafka: parked in a retry
// tier (Parker.Retry) or given up (Parker.GiveUp: the dead-letter topic
// and the failed-batches table, from where operators replay it). A crash
// at any point redelivers; nothing is dropped silently. Events
// arrive as the producer sent them, with the sg_event_id bouncer derived
// added when the producer sent none; receivers dedupe on sg_event_id.
//
// One webhook-id per batch, for all its attempts. Never two concurrent
// sends of one webhook-id: in a process, a retried batch whose id is
// already queued or sending waits for that one; across processes, tier
// messages are keyed by webhook-id (one partition, one owner at a time),
// a tier consumer finishes its attempts before its partition moves, a
// copy parked for a slow attempt is due only after that attempt's
// deadline, and a replay goes out under a new id.
//
// Isolation. Each endpoint has a lane: a bounded queue (Config.QueueEvents)
// and a node-wide bound (GlobalEvents), an in-flight limit that halves on
// 429, 5xx and timeouts and grows back on success, and a circuit breaker
// that parks rather than drops. The handler is a consumer.Stager: the
// group hands it the next consumed batches while earlier ones still wait
// for their deliveries (a window bounded by consumer.GroupConfig.MaxStaged
// and MaxStagedBytes), so an endpoint that hangs does not hold back the
// events of the others. An attempt running past SlowAfter parks a copy of
// its batch, so the consumed batches waiting for it can be committed, and
// the endpoint's next batches are parked rather than sent until it
// succeeds again. A full queue makes the handler wait for room while its
// endpoint is sending normally; what a lane cannot take otherwise goes
// straight to the first retry tier.
//
// Bounded memory: the lanes' queues, the in-flight limits, the parking
// queue and the group's window bound what a node holds.
//
// Not guaranteed: order, and exactly once (a crash, a rebalance, or a
// slow attempt that succeeds on one worker while another sends its copy
// can send a batch twice, under the same webhook-id).
package webhook

import (
	"context"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

// Registry is where delivery reads the subscriptions of every account and
// records what it decided about an endpoint.
type Registry interface {
	// Endpoints returns every subscription, active or not, secrets opened.
	Endpoints(ctx context.Context) ([]subscription.Webhook, error)
	// DisableEndpoint records that delivery gave up on an endpoint.
	DisableEndpoint(ctx context.Context, id string, at time.Time, reason string) error
}
