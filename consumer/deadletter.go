package consumer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/schemas"
)

// Dead-letter message headers. The value is the rejected bytes; the key is
// "topic/partition/offset/index" so a compacted or keyed consumer can tell
// copies of one dead letter apart from others.
const (
	HeaderReason    = "bouncer-reason"
	HeaderDetail    = "bouncer-detail"
	HeaderTopic     = "bouncer-source-topic"
	HeaderPartition = "bouncer-source-partition"
	HeaderOffset    = "bouncer-source-offset"
	HeaderIndex     = "bouncer-source-index"
	HeaderKey       = "bouncer-source-key"
)

// DeadLetterWriter publishes dead letters to a Kafka topic, waiting for all
// in-sync replicas.
type DeadLetterWriter struct {
	w *kafka.Writer
}

// NewDeadLetterWriter returns a writer for topic.
func NewDeadLetterWriter(c Conn, topic string) (*DeadLetterWriter, error) {
	w, err := NewWriter(c, topic, WriterConfig{BatchTimeout: 5 * time.Millisecond, BatchBytes: 8 << 20, AutoCreate: true})
	if err != nil {
		return nil, err
	}
	return &DeadLetterWriter{w: w}, nil
}

// DeadLetterKey is the Kafka key of a dead letter.
func DeadLetterKey(d schemas.DeadLetter) string {
	return d.Topic + "/" + strconv.Itoa(d.Partition) + "/" + strconv.FormatInt(d.Offset, 10) + "/" + strconv.Itoa(d.Index)
}

// PublishDeadLetters sends rows and returns when the brokers hold them.
func (d *DeadLetterWriter) PublishDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error {
	msgs := make([]kafka.Message, len(rows))
	for i, r := range rows {
		msgs[i] = kafka.Message{
			Key:   []byte(DeadLetterKey(r)),
			Value: r.Raw,
			Headers: []kafka.Header{
				{Key: HeaderReason, Value: []byte(r.Code)},
				{Key: HeaderDetail, Value: []byte(r.Detail)},
				{Key: HeaderTopic, Value: []byte(r.Topic)},
				{Key: HeaderPartition, Value: []byte(strconv.Itoa(r.Partition))},
				{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
				{Key: HeaderIndex, Value: []byte(strconv.Itoa(r.Index))},
				{Key: HeaderKey, Value: r.Key},
			},
		}
	}
	if err := d.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d dead letters to %s: %w", len(rows), d.w.Topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (d *DeadLetterWriter) Close() error { return d.w.Close() }
