package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/segmentio/kafka-go"
)

// DefaultTopic is the claims topic unless configured otherwise.
const DefaultTopic = "bouncer.webhooks.claims"

// DefaultPartitions is the partition count a new claims topic gets; it
// must never change afterwards.
const DefaultPartitions = 8

// Log is the claims topic: Append puts a claim in its account's partition,
// Read returns an account's claims up to the partition's end.
type Log struct {
	client *kafka.Client
	topic  string

	mu         sync.Mutex
	partitions int
}

// Open returns the log on topic, creating the topic (partitions
// partitions, kept forever, never compacted) when it does not exist.
func Open(ctx context.Context, conn consumer.Conn, topic string, partitions int) (*Log, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	if err := consumer.EnsureTopic(ctx, conn, topic, partitions,
		kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "delete"},
		kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "-1"},
		kafka.ConfigEntry{ConfigName: "retention.bytes", ConfigValue: "-1"}); err != nil {
		return nil, err
	}
	tr, err := conn.Transport()
	if err != nil {
		return nil, err
	}
	return &Log{client: &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: tr, Timeout: 10 * time.Second}, topic: topic}, nil
}

// partitionCount reads the topic's partition count once.
func (l *Log) partitionCount(ctx context.Context) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.partitions > 0 {
		return l.partitions, nil
	}
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		md, err := l.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{l.topic}})
		if err == nil {
			for _, t := range md.Topics {
				if t.Name == l.topic && t.Error == nil && len(t.Partitions) > 0 {
					l.partitions = len(t.Partitions)
					return l.partitions, nil
				} else if t.Name == l.topic && t.Error != nil {
					err = t.Error
				}
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("webhook claims topic %s: no partitions: %v", l.topic, lastErr)
}

// retry runs fn until it succeeds, fails for good, or 15 seconds pass:
// a new topic has no leader for a moment, and leaders move.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := fn()
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || !ke.Temporary() || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Partition is the partition of an account's claims.
func Partition(account string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(account))
	return int(h.Sum32() % uint32(partitions))
}

// Append writes c to its account's partition (acknowledged by every
// in-sync replica) and returns it with Partition and Offset set.
func (l *Log) Append(ctx context.Context, c Claim) (Claim, error) {
	n, err := l.partitionCount(ctx)
	if err != nil {
		return c, err
	}
	c.Partitions = n
	value, err := json.Marshal(c)
	if err != nil {
		return c, err
	}
	c.Partition = Partition(c.Account, n)
	var resp *kafka.ProduceResponse
	err = retry(ctx, func() error {
		var err error
		resp, err = l.client.Produce(ctx, &kafka.ProduceRequest{
			Topic: l.topic, Partition: c.Partition, RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(kafka.Record{Key: kafka.NewBytes([]byte(c.Account)), Value: kafka.NewBytes(value)}),
		})
		if err == nil {
			err = resp.Error
		}
		return err
	})
	if err != nil {
		return c, fmt.Errorf("webhook claims: append to %s/%d: %w", l.topic, c.Partition, err)
	}
	c.Offset = resp.BaseOffset
	return c, nil
}

// Read returns the claims of scope and account, in offset order, up to
// the partition's end as of the call (so every claim acknowledged before
// it).
func (l *Log) Read(ctx context.Context, scope, account string) ([]Claim, error) {
	n, err := l.partitionCount(ctx)
	if err != nil {
		return nil, err
	}
	p := Partition(account, n)
	var out []Claim
	offset := kafka.FirstOffset
	end := int64(-1)
	for end < 0 || offset < end {
		var resp *kafka.FetchResponse
		err := retry(ctx, func() error {
			var err error
			resp, err = l.client.Fetch(ctx, &kafka.FetchRequest{Topic: l.topic, Partition: p, Offset: offset,
				MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
			if err == nil {
				err = resp.Error
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("webhook claims: read %s/%d at %d: %w", l.topic, p, offset, err)
		}
		if end < 0 {
			end = resp.HighWatermark
		}
		got := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("webhook claims: read %s/%d: %w", l.topic, p, err)
			}
			if rec.Offset < offset && offset >= 0 || rec.Offset >= end {
				continue
			}
			offset = rec.Offset + 1
			got++
			// The key is the account: other accounts' claims are skipped
			// without decoding them.
			key, err := kafka.ReadAll(rec.Key)
			if err != nil {
				return nil, err
			}
			if string(key) != account {
				continue
			}
			value, err := kafka.ReadAll(rec.Value)
			if err != nil {
				return nil, err
			}
			var c Claim
			if err := json.Unmarshal(value, &c); err != nil {
				return nil, fmt.Errorf("webhook claims: %s/%d at %d is not a claim: %w", l.topic, p, rec.Offset, err)
			}
			if c.Account != account || c.Scope != scope {
				continue
			}
			if c.Partitions != n {
				return nil, fmt.Errorf("webhook claims: %s had %d partitions when claim %d was written and has %d now: an account's claims must stay in one partition, so webhook limits cannot be decided; restore the partition count or start a new claims topic (--webhook-claims-topic)",
					l.topic, c.Partitions, rec.Offset, n)
			}
			c.Partition, c.Offset = p, rec.Offset
			out = append(out, c)
		}
		if offset < 0 {
			// An empty partition: nothing before end.
			break
		}
		if got == 0 && offset < end {
			return nil, fmt.Errorf("webhook claims: read %s/%d stalled at %d of %d", l.topic, p, offset, end)
		}
	}
	return out, nil
}

// Close releases the client's connections.
func (l *Log) Close() error {
	if tr, ok := l.client.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	return nil
}
