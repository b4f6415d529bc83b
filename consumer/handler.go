package consumer

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
)

// Message is one Kafka message as the consumer hands it over.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	// Time is the Kafka record's timestamp (zero when unknown): with the
	// worker's clock it bounds event times (pipeline.Config.MaxFutureSkew).
	Time time.Time
	// Headers are the record's headers (a routed copy's source: SourceOf).
	Headers []kafka.Header
}

// BatchHandler is what a consumer group member drives, per partition.
type BatchHandler interface {
	// Assigned is called when the member starts owning a partition. It
	// returns the first offset not yet handled (0 when nothing is known);
	// the consumer starts at the later of that and the committed offset.
	Assigned(ctx context.Context, topic string, partition int) (next int64, err error)
	// Handle processes messages of one partition, in offset order. On nil
	// the group may commit past the last message; on error the group calls
	// Handle again with the same messages (after a pause) or, after a
	// reassignment, Assigned first.
	Handle(ctx context.Context, topic string, partition int, msgs []Message) error
}

// Revoker is a BatchHandler told when the member stops owning a partition:
// the generation ended (a rebalance, an expulsion) or the member shuts
// down. Revoked is called after the partition's last Assigned, Handle or
// Stage of the generation returned, so the handler can let go of what it
// holds for the partition (consumer.Slices).
type Revoker interface {
	Revoked(topic string, partition int)
}
