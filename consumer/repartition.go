package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// RepartitionReport says what RepartitionChangeLog found and did.
type RepartitionReport struct {
	// Read is the messages read (tombstones included).
	Read int
	// Misplaced is the distinct keys found in another partition than
	// their recipient's (and not cleared by a tombstone there since).
	Misplaced int
	// Copied is the misplaced changes written to their recipient's
	// partition: those newer than what that partition held of their key.
	Copied int
	// Tombstones is the tombstones written where misplaced keys were.
	Tombstones int
}

// misplacedKey is one key found outside its recipient's partition.
type misplacedKey struct {
	key     string
	from    []int // the partitions it sits in, wrongly
	value   []byte
	version uint64
	right   int
}

// RepartitionChangeLog rewrites a change log written before bouncer
// partitioned it by recipient (each message in the partition kafka.Hash
// of its key chose) into PartitionOf's layout, in place: every change
// found in another partition than its recipient's is written to its
// recipient's partition, unless that partition already holds a change of
// the key of the same or a higher version (compaction keeps the last
// message written, so an older copy must never follow a newer change),
// and once the brokers hold the copies, a tombstone of the key goes to
// each partition it sat in wrongly (compaction then removes it there;
// readers skip tombstones). Run it with the change log's writers stopped
// (workers, bouncer api). Running it again finds nothing to do. With dry,
// it only reports. Its memory grows with the misplaced keys.
func RepartitionChangeLog(ctx context.Context, c Conn, topic string, dry bool) (RepartitionReport, error) {
	var rep RepartitionReport
	dialer, err := c.Dialer()
	if err != nil {
		return rep, err
	}
	n, err := TopicPartitions(ctx, c, topic)
	if err != nil {
		return rep, err
	}
	// Pass 1: the misplaced keys, with their newest change, and the
	// partitions they sit in wrongly.
	misplaced := map[string]*misplacedKey{}
	var order []string
	err = readPartitions(ctx, c, dialer, topic, n, func(p int, m kafka.Message) {
		rep.Read++
		key := string(m.Key)
		if len(m.Value) == 0 {
			if mk := misplaced[key]; mk != nil {
				for i, f := range mk.from {
					if f == p { // the tombstone clears it here
						mk.from = append(mk.from[:i], mk.from[i+1:]...)
						break
					}
				}
			}
			return
		}
		var cm ChangeMessage
		if json.Unmarshal(m.Value, &cm) != nil || cm.AccountID == "" || cm.EmailNorm == "" {
			return // readers skip it too
		}
		right := PartitionOf(cm.AccountID, cm.EmailNorm, n)
		if right == p {
			return
		}
		mk := misplaced[key]
		if mk == nil {
			mk = &misplacedKey{key: key, right: right}
			misplaced[key] = mk
			order = append(order, key)
		}
		if len(mk.from) == 0 || mk.from[len(mk.from)-1] != p {
			mk.from = append(mk.from, p)
		}
		if mk.value == nil || cm.Version >= mk.version {
			mk.value, mk.version = append([]byte(nil), m.Value...), cm.Version
		}
	})
	if err != nil {
		return rep, err
	}
	var todo []*misplacedKey
	targets := map[int]bool{}
	for _, k := range order {
		if mk := misplaced[k]; len(mk.from) > 0 {
			todo = append(todo, mk)
			targets[mk.right] = true
		}
	}
	rep.Misplaced = len(todo)
	if len(todo) == 0 {
		return rep, nil
	}
	// Pass 2: what the recipients' partitions hold of those keys.
	held := map[string]uint64{}
	err = readPartitions(ctx, c, dialer, topic, n, func(p int, m kafka.Message) {
		mk := misplaced[string(m.Key)]
		if !targets[p] || mk == nil || mk.right != p || len(m.Value) == 0 {
			return
		}
		var cm ChangeMessage
		if json.Unmarshal(m.Value, &cm) == nil {
			held[mk.key] = max(held[mk.key], cm.Version+1) // +1: 0 means none
		}
	})
	if err != nil {
		return rep, err
	}
	var copies, tombstones []kafka.Message
	for _, mk := range todo {
		if v, ok := held[mk.key]; !ok || v-1 < mk.version {
			copies = append(copies, kafka.Message{Partition: mk.right, Key: []byte(mk.key), Value: mk.value})
		}
		for _, p := range mk.from {
			tombstones = append(tombstones, kafka.Message{Partition: p, Key: []byte(mk.key)})
		}
	}
	rep.Copied, rep.Tombstones = len(copies), len(tombstones)
	if dry {
		return rep, nil
	}
	w, err := NewWriter(c, topic, WriterConfig{BatchTimeout: 5 * time.Millisecond, BatchBytes: 8 << 20})
	if err != nil {
		return rep, err
	}
	defer w.Close()
	w.Balancer = explicitPartition{}
	// The copies first: a tombstone must not remove the only copy.
	for _, msgs := range [][]kafka.Message{copies, tombstones} {
		if err := WriteRetrying(ctx, w, msgs, time.Minute, nil); err != nil {
			return rep, fmt.Errorf("change log %s: write: %w", topic, err)
		}
	}
	return rep, nil
}

// explicitPartition sends a message to the partition it names.
type explicitPartition struct{}

func (explicitPartition) Balance(msg kafka.Message, _ ...int) int { return msg.Partition }

// readPartitions calls fn with every message of each of topic's n
// partitions, from its start to where it ended when reading began.
func readPartitions(ctx context.Context, c Conn, dialer *kafka.Dialer, topic string, n int, fn func(partition int, m kafka.Message)) error {
	for p := range n {
		first, end, err := partitionOffsets(ctx, dialer, c.Brokers, topic, p)
		if err != nil {
			return fmt.Errorf("change log %s/%d: offsets: %w", topic, p, err)
		}
		if first >= end {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: c.Brokers, Topic: topic, Partition: p, Dialer: dialer,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return err
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return fmt.Errorf("change log %s/%d: read: %w", topic, p, err)
			}
			fn(p, m)
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	return nil
}
