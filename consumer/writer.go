package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
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
