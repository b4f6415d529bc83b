// Package consumer is bouncer's Kafka adapter: consumer group membership
// (Group, driving a BatchHandler with Messages), batching, committing
// offsets only after the handler succeeded, the one producer constructor
// (NewWriter; WriteRetrying resends what a dying leader refused), the
// dead-letter producer, the suppression change log (ChangeWriter,
// FollowChanges, LoadIndex, which returns an index once it holds what
// the log held at start, and Slices, a worker's index of its partitions'
// recipients only), topic creation and the connection settings (TLS,
// SASL) they share. It knows Kafka and
// nothing of what the handlers do.
//
// # Guarantees
//
// Messages of a partition reach the handler in offset order, in batches
// bounded by count, bytes and wait. Offsets are committed only after the
// handler returned nil for every message below them, so a crash redelivers
// (at least once); the handler makes that exact (see package pipeline).
// A failed batch is retried with backoff, never skipped. When the
// generation ends (a rebalance, or this member expelled because the group's
// coordinator died), a partition's goroutine abandons its in-flight batch
// (the handler's context is cancelled) and exits before the member rejoins
// (kafka-go's Generation waits for it). An expelled member learns of it at
// its next failed heartbeat (HeartbeatInterval), before the coordinator gives
// its partitions away (SessionTimeout); a handler write already on the wire
// when the context is cancelled may still land, so the handler's marks must
// be re-read by the next owner (they are, on assignment). On shutdown the
// in-flight batch gets HandleTimeout to finish and is committed. A Stager
// (the webhook group's handler) is handed up to MaxStaged batches of a
// partition before the first is done, one Stage call at a time; commits
// stay in offset order. A handler that is a Revoker is told when the member
// stops owning a partition, after its last call for it returned.
//
// # Suppression slices
//
// The change log is partitioned by PartitionOf (murmur2 of account and
// normalised recipient). Slices is a worker's suppression index holding
// only the slices of the change-log partitions its handlers hold
// (pipeline.SliceHolder: a handler holds its assigned partition's slice,
// and before deciding a batch the slices of the batch's recipients, and
// releases them on revocation; a slice no one holds is dropped after
// Slices.Linger).
//
// Guaranteed:
//   - A Hold returns only once the slice holds every change its change-log
//     partition held when the owner first asked for it, and the slice
//     follows the partition while held. So a partition's first batch is
//     decided only after its slice is loaded and caught up, and every
//     change a previous owner of the event partition announced (before
//     storing its batches, pipeline) is counted: derived drops are exact,
//     as with a full index, whatever the batching, kills and rebalances.
//   - Events a producer put in another partition than PartitionOf says
//     are decided exactly too: with re-routing (the worker's default), the
//     sink group copies them to the routed topic (RoutedTopic, CopyWriter;
//     the rules and the proof of exactly once are package pipeline's), and
//     the holder of their slice decides them there, so each worker holds
//     only its partitions' slices (a foreign hold is counted:
//     bouncer_suppression_slice_foreign_holds_total). Without it their
//     recipients' slices are held before the batch is decided (loading
//     them first, which delays the batch), and memory shrinks only for a
//     topic partitioned like the change log.
//
// A Group consumes GroupConfig.Topic and GroupConfig.Topics (the routed
// topic) in one consumer group; each partition of each is handled and
// committed on its own, as above.
//   - A change-log partition holding changes of other partitions'
//     recipients (a log written before it was partitioned by recipient)
//     makes Hold fail with what to do, and the worker not ready, instead of
//     deciding from a slice that may miss changes.
//
// Timing-dependent, as with a full index: changes made outside the event
// stream (the API, imports, erasure) count for an event once its worker
// read them from the change log, and so do the changes of a recipient's
// events in another partition (a producer that moved the recipient, or
// partitions added): which of those an event sees depends on when it is
// decided. The API's batch check keeps its own full copy (LoadIndex).
package consumer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/bouncer-mail/bouncer/internal/retry"
)

// Conn says how to reach Kafka.
type Conn struct {
	// Brokers are host:port bootstrap addresses. Required.
	Brokers []string
	// TLS enables TLS to the brokers.
	TLS bool
	// SASLMechanism is "", "plain", "scram-sha-256" or "scram-sha-512".
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	// TopicReplication is the replication factor of the topics bouncer
	// creates when they are missing (EnsureTopic); 0, the default, means
	// min(3, brokers in the cluster).
	TopicReplication int
}

// Validate reports the first bad field.
func (c Conn) Validate() error {
	if len(c.Brokers) == 0 || c.Brokers[0] == "" {
		return errors.New("kafka brokers are empty: set KAFKA_BROKERS (host:port[,host:port...])")
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("kafka broker %q: want host:port", b)
		}
	}
	if c.TopicReplication < 0 {
		return fmt.Errorf("topic replication factor %d: want 0 (min(3, brokers)) or more", c.TopicReplication)
	}
	if _, err := c.mechanism(); err != nil {
		return err
	}
	return nil
}

func (c Conn) mechanism() (sasl.Mechanism, error) {
	switch strings.ToLower(c.SASLMechanism) {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.SASLUsername, c.SASLPassword)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.SASLUsername, c.SASLPassword)
	}
	return nil, fmt.Errorf("kafka SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
}

func (c Conn) tlsConfig() *tls.Config {
	if !c.TLS {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// Dialer returns a kafka-go Dialer with the connection settings.
func (c Conn) Dialer() (*kafka.Dialer, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.tlsConfig(), SASLMechanism: mech}, nil
}

// Transport returns a kafka-go Transport for Writers.
func (c Conn) Transport() (*kafka.Transport, error) {
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{DialTimeout: 10 * time.Second, TLS: c.tlsConfig(), SASL: mech}, nil
}

// EnsureTopic creates topic with the given partitions and topic configs if
// it does not exist. An existing topic is left as it is.
//
// The replication factor is c.TopicReplication, or min(3, brokers the
// cluster reports) when that is 0: one replica on a single broker, three on
// a cluster, so a broker crash loses no dead letter, change-log entry or
// webhook retry. With three replicas or more the topic also gets
// min.insync.replicas=2 (unless configs set it), so a write acknowledged by
// all in-sync replicas is on two brokers; with two, one in-sync replica
// stays enough, or a single broker down would stop every write.
//
// A broker that has just started may not know its controller yet (kafka-go
// then reports an empty controller address) or may refuse connections for a
// moment; EnsureTopic retries such failures with backoff for up to
// ensureTopicPatience, so a worker started next to a restarting broker waits
// instead of exiting. It gives up early when ctx ends.
//
// It returns once every broker that answers knows the topic with a leader
// for each partition, not only the controller: brokers learn of a new topic
// asynchronously, and a kafka-go Writer keeps the metadata it first read (for
// its MetadataTTL), so a write right after the topic was created, whose
// metadata came from a broker that had not caught up, failed with "Unknown
// Topic Or Partition" (TestCluster's parity stream, CI at 29355a2).
func EnsureTopic(ctx context.Context, c Conn, topic string, partitions int, configs ...kafka.ConfigEntry) error {
	dialer, err := c.Dialer()
	if err != nil {
		return err
	}
	return retry.Do(ctx, retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, GiveUpAfter: ensureTopicPatience}, func() error {
		err := createTopic(ctx, dialer, c.Brokers[0], topic, partitions, c.TopicReplication, configs)
		if err == nil {
			err = topicKnown(ctx, dialer, c.Brokers[0], topic)
		}
		if err == nil || errors.Is(err, errControllerUnknown) || errors.Is(err, errTopicNotKnown) || isConnRefused(err) {
			return err
		}
		return retry.Permanent(err)
	})
}

// topicConfig is the TopicConfig of a new topic on a cluster of brokers
// brokers: replication (0: min(3, brokers)) and min.insync.replicas as
// EnsureTopic describes.
func topicConfig(topic string, partitions, replication, brokers int, configs []kafka.ConfigEntry) kafka.TopicConfig {
	if replication <= 0 {
		replication = max(min(3, brokers), 1)
	}
	cfg := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: replication,
		ConfigEntries: slices.Clone(configs)}
	if replication >= 3 && !slices.ContainsFunc(configs, func(e kafka.ConfigEntry) bool { return e.ConfigName == "min.insync.replicas" }) {
		cfg.ConfigEntries = append(cfg.ConfigEntries, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: "2"})
	}
	return cfg
}

// ensureTopicPatience bounds how long EnsureTopic waits for a broker that
// does not answer or does not know its controller yet.
const ensureTopicPatience = 90 * time.Second

var errControllerUnknown = errors.New("the broker does not know the cluster's controller yet")

func createTopic(ctx context.Context, dialer *kafka.Dialer, broker, topic string, partitions, replication int, configs []kafka.ConfigEntry) error {
	conn, err := dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return fmt.Errorf("connect to kafka %s: %w", broker, err)
	}
	defer conn.Close()
	brokers, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("list kafka brokers: %w", err)
	}
	cfg := topicConfig(topic, partitions, replication, len(brokers), configs)
	controller, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find kafka controller: %w", err)
	}
	if controller.Host == "" {
		return fmt.Errorf("find kafka controller via %s: %w", broker, errControllerUnknown)
	}
	cc, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	if err != nil {
		return fmt.Errorf("connect to kafka controller: %w", err)
	}
	defer cc.Close()
	err = cc.CreateTopics(cfg)
	if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", cfg.Topic, err)
	}
	return nil
}

var errTopicNotKnown = errors.New("a broker does not know the topic or a leader of its partitions yet")

// topicKnown checks that every broker the cluster lists answers metadata for
// topic with a leader for each partition. A broker that does not accept a
// connection is skipped (a client cannot read metadata from it either).
func topicKnown(ctx context.Context, dialer *kafka.Dialer, broker, topic string) error {
	conn, err := dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return fmt.Errorf("connect to kafka %s: %w", broker, err)
	}
	brokers, err := conn.Brokers()
	conn.Close()
	if err != nil {
		return fmt.Errorf("list kafka brokers: %w", err)
	}
	for _, b := range brokers {
		addr := net.JoinHostPort(b.Host, strconv.Itoa(b.Port))
		bc, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			continue
		}
		parts, err := bc.ReadPartitions(topic)
		bc.Close()
		var ke kafka.Error
		switch {
		case errors.As(err, &ke) && ke.Temporary():
			return fmt.Errorf("metadata of %s from broker %s: %w: %w", topic, addr, errTopicNotKnown, err)
		case errors.As(err, &ke):
			return fmt.Errorf("metadata of %s from broker %s: %w", topic, addr, err)
		case err != nil:
			continue // the connection failed: as a broker that refuses one
		}
		if len(parts) == 0 {
			return fmt.Errorf("broker %s lists no partition of %s: %w", addr, topic, errTopicNotKnown)
		}
		for _, p := range parts {
			if p.Leader.Host == "" {
				return fmt.Errorf("broker %s knows no leader of %s/%d: %w", addr, topic, p.ID, errTopicNotKnown)
			}
		}
	}
	return nil
}

func isConnRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Committed returns the offsets group has committed for partitions 0 to
// partitions-1 of topic, -1 for a partition without a commit.
func Committed(ctx context.Context, c Conn, group, topic string, partitions int) ([]int64, error) {
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: tr, Timeout: 10 * time.Second}
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	out := make([]int64, partitions)
	for i := range out {
		out[i] = -1
	}
	for _, p := range resp.Topics[topic] {
		if p.Error == nil && p.Partition >= 0 && p.Partition < partitions {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// WaitUnowned returns, ending the generation so the member rejoins, once
// topic has partitions while no member of the stable group owns
// any: the assignment was made before the brokers knew the topic (kafka-go
// keeps such an empty assignment, and its partition watcher misses a topic
// that appeared between the assignment and the watcher's first look).
// A member that got nothing because the others hold every partition stays.
func WaitUnowned(ctx context.Context, conn Conn, topic, group string, log *slog.Logger) {
	tr, err := conn.Transport()
	if err != nil {
		<-ctx.Done()
		return
	}
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...), Transport: tr, Timeout: 10 * time.Second}
	for Sleep(ctx, 2*time.Second) {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
			continue
		}
		gr, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(gr.Groups) != 1 || gr.Groups[0].Error != nil || gr.Groups[0].GroupState != "Stable" {
			continue
		}
		owned := false
		for _, m := range gr.Groups[0].Members {
			for _, t := range m.MemberAssignments.Topics {
				owned = owned || (t.Topic == topic && len(t.Partitions) > 0)
			}
		}
		if !owned {
			log.Info("consumer group: no member owns the topic's partitions (the group was assigned before the topic was known); rejoining", "topic", topic, "group", group, "partitions", len(md.Topics[0].Partitions))
			return
		}
	}
}
