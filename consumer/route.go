package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/retry"
)

// Routed copies: an event a producer put in another partition than
// PartitionOf says is copied, by the sink group, to partition PartitionOf
// of the event topic's routed topic (RoutedTopic), where the holder of that
// partition's suppression slice decides it (package pipeline has the rules
// and the proof that the events table stays exact). This file is the Kafka
// side: the copies' headers and the producer that keeps their order.

// RoutedTopic is the internal topic of topic's routed copies. It has as
// many partitions as the suppression change log (a routed partition p holds
// the copies of the events whose recipients' slice is p).
func RoutedTopic(topic string) string { return topic + ".routed" }

// The routed copy of a source message carries the source message's key,
// value and time unchanged, and in headers where it came from and the
// latest event time the router accepted (so the copy decodes to the same
// events: schemas.Decoder.MaxTimestamp).
const (
	headerRoutedFrom   = "bouncer-routed-from"   // "partition/offset" of the source message
	headerMaxTimestamp = "bouncer-max-timestamp" // unix seconds; 0: no bound
)

// RoutedMaxMessageBytes is the routed topic's max.message.bytes when
// EnsureRoutedTopic creates it: room for a source message at bouncer's own
// limit (1 MiB by default) plus the headers.
const RoutedMaxMessageBytes = 2 << 20

// EnsureRoutedTopic creates the routed topic with partitions partitions
// (the change log's count) when it is missing.
func EnsureRoutedTopic(ctx context.Context, c Conn, topic string, partitions int) error {
	return EnsureTopic(ctx, c, topic, partitions,
		kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(RoutedMaxMessageBytes)})
}

// Copy is a source message to copy to a routed partition.
type Copy struct {
	// Partition is the routed partition (the recipients' slice).
	Partition int
	// Source is the message copied; its Topic, Partition and Offset go in
	// the copy's headers.
	Source *Message
	// MaxTimestamp is the latest event time the router accepted for it (0:
	// none).
	MaxTimestamp int64
}

// RoutedSource is where a routed copy came from.
type RoutedSource struct {
	Partition    int
	Offset       int64
	MaxTimestamp int64
}

// SourceOf reads a routed copy's headers; ok is false for a message that
// is not a routed copy (or whose headers are damaged).
func SourceOf(m *Message) (src RoutedSource, ok bool) {
	var from, maxTS string
	for _, h := range m.Headers {
		switch h.Key {
		case headerRoutedFrom:
			from = string(h.Value)
		case headerMaxTimestamp:
			maxTS = string(h.Value)
		}
	}
	p, o, found := cutInts(from)
	if !found {
		return RoutedSource{}, false
	}
	ts, err := strconv.ParseInt(maxTS, 10, 64)
	if err != nil {
		return RoutedSource{}, false
	}
	return RoutedSource{Partition: int(p), Offset: o, MaxTimestamp: ts}, true
}

func cutInts(s string) (int64, int64, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			a, err1 := strconv.ParseInt(s[:i], 10, 32)
			b, err2 := strconv.ParseInt(s[i+1:], 10, 64)
			return a, b, err1 == nil && err2 == nil && a >= 0 && b >= 0
		}
	}
	return 0, 0, false
}

// Headers are the copy's headers (SourceOf reads them).
func (c Copy) Headers() []kafka.Header {
	return []kafka.Header{
		{Key: headerRoutedFrom, Value: []byte(strconv.Itoa(c.Source.Partition) + "/" + strconv.FormatInt(c.Source.Offset, 10))},
		{Key: headerMaxTimestamp, Value: []byte(strconv.FormatInt(c.MaxTimestamp, 10))},
	}
}

// copyRecord is c as a Kafka record.
func copyRecord(c Copy) kafka.Record {
	src := c.Source
	return kafka.Record{Time: src.Time, Key: kafka.NewBytes(src.Key), Value: kafka.NewBytes(src.Value), Headers: c.Headers()}
}

// copyRetry is how long a request of copies is sent again after retryable
// failures before WriteCopies fails (the handler then retries the batch).
var copyRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second, GiveUpAfter: 15 * time.Second}

// maxCopyRequestBytes bounds the values of one produce request of copies
// (a lone larger copy goes alone): under the brokers' default
// message.max.bytes, so a request is one record batch the broker appends
// whole or not at all.
const maxCopyRequestBytes = 900 << 10

// CopyWriter produces routed copies. Its one promise is order: the copies
// of a WriteCopies call reach each routed partition in the order given,
// and a copy is sent only after every earlier copy of the call to the same
// partition was acknowledged (appended) by the brokers. So whatever fails,
// what a partition holds of one call is a prefix of the call's copies to
// it, followed by nothing (a request whose answer was lost may still be
// appended after its predecessors, never before). kafka-go's Writer does
// not promise that (a failed batch does not stop the partition's next
// one), so each request is one produce request of one record batch,
// written with kafka-go's Client.
type CopyWriter struct {
	client *kafka.Client
	topic  string
	// maxBytes is maxCopyRequestBytes (smaller in tests).
	maxBytes int
}

// NewCopyWriter returns a CopyWriter to topic (RoutedTopic of the event
// topic) over c.
func NewCopyWriter(c Conn, topic string) (*CopyWriter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &CopyWriter{
		client: &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: 30 * time.Second},
		topic:  topic, maxBytes: maxCopyRequestBytes,
	}, nil
}

// Topic is the routed topic written to.
func (w *CopyWriter) Topic() string { return w.topic }

// WriteCopies produces copies (see CopyWriter for the order) and returns
// nil once the brokers acknowledged every one (all in-sync replicas), or
// the first error; the partitions are written concurrently.
func (w *CopyWriter) WriteCopies(ctx context.Context, copies []Copy) error {
	byPart := map[int][]Copy{}
	for _, c := range copies {
		byPart[c.Partition] = append(byPart[c.Partition], c)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for p, cs := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.writePartition(ctx, p, cs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writePartition sends cs to partition p in requests of at most maxBytes,
// each after the previous one was acknowledged.
func (w *CopyWriter) writePartition(ctx context.Context, p int, cs []Copy) error {
	for len(cs) > 0 {
		n, size := 0, 0
		for n < len(cs) && (n == 0 || size+len(cs[n].Source.Value) <= w.maxBytes) {
			size += len(cs[n].Source.Value) + len(cs[n].Source.Key)
			n++
		}
		// A retryable failure (the leader moved, the brokers' metadata of a
		// new topic not yet everywhere) sends the same request again: the
		// first may still be appended, but only after its predecessors, so
		// the order holds (a copy twice is skipped when stored).
		err := retry.Do(ctx, copyRetry, func() error {
			// New records each time: a record's key and value are read
			// when sent.
			recs := make([]kafka.Record, n)
			for i := range recs {
				recs[i] = copyRecord(cs[i])
			}
			res, err := w.client.Produce(ctx, &kafka.ProduceRequest{
				Topic: w.topic, Partition: p, RequiredAcks: kafka.RequireAll,
				Records: kafka.NewRecordReader(recs...),
			})
			if err == nil && res.Error != nil {
				err = res.Error
			}
			if err != nil && !RetryableWrite(err) {
				return retry.Permanent(err)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("routed copies to %s/%d: %w", w.topic, p, err)
		}
		cs = cs[n:]
	}
	return nil
}
