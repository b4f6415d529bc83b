package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/retry"
)

// WriterConfig tunes NewWriter's batching; zero fields take kafka-go's
// defaults (100 messages, 1 MiB, 1s).
type WriterConfig struct {
	// BatchSize is the most messages in one produce request.
	BatchSize int
	// BatchBytes is the most bytes in one; keep it at or under the
	// brokers' message.max.bytes (1 MiB by default): a larger batch to one
	// partition is refused whole.
	BatchBytes int64
	// BatchTimeout is the longest a message waits for its batch to fill.
	BatchTimeout time.Duration
	// AutoCreate lets the brokers create a missing topic.
	AutoCreate bool
}

// NewWriter is the one way bouncer makes a Kafka producer: messages keyed
// by a hash of their key (so one key stays in one partition, in order),
// acknowledged by all in-sync replicas before WriteMessages returns, over
// c's TLS and SASL settings. topic may be "" for a writer whose messages
// name their topics.
func NewWriter(c Conn, topic string, cfg WriterConfig) (*kafka.Writer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Writer{
		Addr:                   kafka.TCP(c.Brokers...),
		Topic:                  topic,
		Balancer:               &kafka.Hash{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		AllowAutoTopicCreation: cfg.AutoCreate,
		Transport:              tr,
	}, nil
}

// Replayed is one message sent again by Replay, with where it came from.
type Replayed struct {
	Key, Value []byte
	// Origin names the message it replays (topic/partition/offset/index);
	// Reason why it was set aside. Both travel as headers
	// (bouncer-replay-of, bouncer-replay-reason).
	Origin, Reason string
}

// Replay produces msgs to topic and returns when the brokers hold them.
func Replay(ctx context.Context, c Conn, topic string, msgs []Replayed) error {
	w, err := NewWriter(c, topic, WriterConfig{BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer w.Close()
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		out[i] = kafka.Message{Key: m.Key, Value: m.Value, Headers: []kafka.Header{
			{Key: "bouncer-replay-of", Value: []byte(m.Origin)}, {Key: "bouncer-replay-reason", Value: []byte(m.Reason)}}}
	}
	if err := w.WriteMessages(ctx, out...); err != nil {
		return fmt.Errorf("replay to %s: %w", topic, err)
	}
	return nil
}

// WriteRetrying writes msgs, resending the ones that failed with a
// retryable error until they are written or patience runs out.
//
// kafka-go's writer tries a failed batch 10 times within about 7 seconds,
// but when a broker dies its partitions get a new leader only after the
// controller's broker session timeout (9 s by default), and the writer
// learns of it at its next metadata refresh (every 6 s): without this, one
// broker crash ends the stream. A message whose acknowledgement was lost
// may be written twice (at two offsets); Kafka's idempotent producer, which
// would prevent that, is not in kafka-go. A write that fails as a whole
// with a temporary Kafka error (the writer's metadata does not know the
// topic yet: kafka-go then sends nothing) is resent whole.
//
// retrying (nil: none) is told of each resend: how many messages failed of
// how many, the shortened error and the wait before resending.
func WriteRetrying(ctx context.Context, w *kafka.Writer, msgs []kafka.Message, patience time.Duration, retrying func(failed, of int, err error, wait time.Duration)) error {
	of := len(msgs)
	p := retry.Policy{Initial: 500 * time.Millisecond, Max: 5 * time.Second, GiveUpAfter: patience}
	if retrying != nil {
		p.Notify = func(err error, wait time.Duration) { retrying(len(msgs), of, ShortWriteError(err), wait) }
	}
	return retry.Do(ctx, p, func() error {
		err := w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		var we kafka.WriteErrors
		switch {
		case errors.As(err, &we) && len(we) == len(msgs):
			failed := make([]kafka.Message, 0, we.Count())
			for i, e := range we {
				if e == nil {
					continue
				}
				if !RetryableWrite(e) {
					return retry.Permanent(err)
				}
				failed = append(failed, msgs[i])
			}
			of, msgs = len(msgs), failed
		case ctx.Err() == nil && isKafkaTemporary(err):
			// The writer failed before sending anything: its metadata
			// (cached for its MetadataTTL) does not list the topic's
			// partitions yet. Every message is resent.
			of = len(msgs)
		default:
			return retry.Permanent(err)
		}
		return err
	})
}

func isKafkaTemporary(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Temporary()
}

// RetryableWrite reports whether a message's write error can pass: the
// leader is gone, moving or not reachable, or a replica is missing.
func RetryableWrite(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded)
}

// ShortWriteError shortens kafka-go's WriteErrors (one text per message, which
// can make a line of megabytes) to the count and the first cause.
func ShortWriteError(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d messages not written, the first: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}
