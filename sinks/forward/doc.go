// Package forward forwards bounces by email: for every bounce of an account
// that has bounce forwarding enabled (SendGrid's mail setting
// forward_bounce), it sends a short report to the account's address through
// an SMTP relay. It is the handler of its own consumer group on the events
// topic, so a slow or dead relay delays only forwarding, never the sink.
//
// # What is forwarded
//
// A bounce event (event "bounce", type "bounce") whose classification is
// hard (the address is invalid), of an account whose newest setting is
// enabled with an address. Soft bounces (mailbox full, reputation, content,
// rate limits), deferrals and other events are not. Blocks (type "blocked")
// are not forwarded unless Config.ForwardBlocks is set: SendGrid's setting
// forwards bounces, and blocks say more about the sender than the address.
//
// Bounces whose event time is older than MaxAge (default 6h) are skipped:
// a new forwarding group reads the topic from its start, and a relay outage
// longer than that is not replayed as a flood of stale reports.
//
// Each report names the recipient, the reason, the enhanced status, the
// classification (bouncer's, as the sink stores it), the event time, the
// message ids (sg_message_id, smtp-id) and the event id.
//
// # No loops
//
// Every message the forwarder sends carries the header X-Bouncer-Forwarded,
// Auto-Submitted: auto-generated, X-SMTPAPI unique_args
// {"bouncer_forwarded":"1"} (for SendGrid relays, whose events then carry
// that custom argument), and a Message-ID of the form
// <bouncer-fwd.RANDOM@DOMAIN> (DOMAIN is the From address's). A bounce is
// never forwarded when its recipient is the account's forwarding address, or
// when its smtp-id, sg_message_id or custom arguments carry "bouncer-fwd."
// or "bouncer_forwarded".
//
// # Rate cap and digests
//
// Each account may get RateLimit reports per RateWindow (windows aligned to
// the clock: with a 1m window, each UTC minute). Bounces beyond that are
// collected and sent as one digest email when the window ends. A digest
// lists at most DigestMax bounces and counts the rest; all pending digests
// together list at most MaxPendingBounces (the rest are counted), so memory
// stays bounded whatever the backlog.
//
// # Delivery, retries, offsets
//
// A report is sent synchronously while its batch is handled; a digest is
// sent by Run when its window ends. A send that fails transiently (an SMTP
// 4xx reply, a connection error, a timeout, or a failure to set up the
// session: TLS or AUTH, which is the relay's or the configuration's fault,
// not the message's) is retried with exponential backoff and jitter
// (RetryInitial up to RetryMax between attempts) for at most GiveUpAfter;
// a 5xx reply to the message itself (MAIL FROM, RCPT TO, DATA) is
// permanent and not retried. Both are logged and counted in
// bouncer_forward_emails_total. Each attempt is bounded by Relay.Timeout.
//
// Handle returns, and the consumer commits the batch's offsets, only after
// every report of the batch was handed to the relay (accepted with 250),
// given up, or folded into a pending digest. So:
//
//   - a crash or a revocation before the commit redelivers the batch, and
//     reports already sent are sent again (at least once);
//   - StopRetrying (called when shutdown begins) makes a send waiting to
//     retry fail at once: its batch is not committed and is redelivered;
//   - a crash (kill -9) loses the pending digests: their bounces' offsets
//     are committed. A clean shutdown sends pending digests early (Run's
//     final flush, bounded by FlushTimeout).
//
// # Running and stopping
//
// A Service is the forwarding group on Kafka with its Forwarder; it owns
// its lifecycle (internal/ops.Service): Run forwards, Shutdown(ctx) stops
// the intake (and StopRetrying), lets the group commit what was handled and
// leave, then sends the pending digests (FlushTimeout), each step bounded,
// and may be called any number of times. bouncer worker only calls them.
//
// Settings are read from the Settings store every RefreshEvery, never per
// event; a change reaches the forwarder within that interval. A digest goes
// to the address of the newest setting, and is dropped if forwarding was
// turned off before it was sent.
package forward
