package kafkatier_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
)

type chanRedeliverer chan *webhook.Batch

func (c chanRedeliverer) Redeliver(ctx context.Context, bs []*webhook.Batch) error {
	for _, b := range bs {
		select {
		case c <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// TestTierJoinedBeforeTopicExists: a tier's consumer group that joined
// while its topic was not known to the brokers yet (a worker starting
// right after creating the tier topics: the brokers' metadata lags the
// creation) got no partitions. Before the fix it kept that empty
// assignment for good: batches parked in the tier were never handed back
// (in CI, a circuit stayed half-open because no batch came back to probe
// it). The group must notice the topic and take its partitions.
func TestTierJoinedBeforeTopicExists(t *testing.T) {
	brokers := testenv.Kafka(t)
	base := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	topics := kafkatier.Topics{Prefix: base + ".wh", Delays: []time.Duration{time.Second}}
	t.Cleanup(func() { deleteTopics(conn.Brokers[0], topics.All()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	got := make(chanRedeliverer, 16)
	cfg := kafkatier.TierConfig{Conn: conn, Topics: topics, Group: base + ".webhooks", SessionTimeout: 6 * time.Second}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- kafkatier.RunTiers(runCtx, cfg, got) }()
	defer func() { stop(); <-done }()

	// Wait until the group has a generation: its assignment was made
	// while the tier topic did not exist.
	client := &kafka.Client{Addr: kafka.TCP(conn.Brokers...)}
	group := cfg.GroupOf(0)
	for {
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err == nil && len(resp.Groups) == 1 && resp.Groups[0].GroupState == "Stable" && len(resp.Groups[0].Members) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("group %s never became stable: %v", group, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if err := kafkatier.Ensure(ctx, conn, topics, 1); err != nil {
		t.Fatal(err)
	}
	w, err := kafkatier.NewWriter(conn, topics)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := &webhook.Batch{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acme", Created: time.Now(),
		Events: []json.RawMessage{json.RawMessage(`{"event":"processed"}`)}, EventTimes: []int64{time.Now().Unix()},
		Attempts: 1, Due: time.Now()}
	if err := w.Retry(ctx, []*webhook.Batch{b}); err != nil {
		t.Fatal(err)
	}
	wait := time.NewTimer(60 * time.Second)
	defer wait.Stop()
	select {
	case r := <-got:
		if r.WebhookID != b.WebhookID {
			t.Fatalf("redelivered %s, want %s", r.WebhookID, b.WebhookID)
		}
	case <-wait.C:
		t.Fatalf("the batch parked in %s was not handed back within 60s: the tier's group never took the topic's partitions", topics.Tier(0))
	}
}

// TestTierWaitsOnItsClock: a parked batch is handed back when it is due by
// the tier's clock (a fake one here: the test does not wait the delay), not
// before.
func TestTierWaitsOnItsClock(t *testing.T) {
	brokers := testenv.Kafka(t)
	base := testenv.Topic(t, brokers, 1)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	topics := kafkatier.Topics{Prefix: base + ".wh", Delays: []time.Duration{time.Minute}}
	t.Cleanup(func() { deleteTopics(conn.Brokers[0], topics.All()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafkatier.Ensure(ctx, conn, topics, 1); err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(time.Now())
	got := make(chanRedeliverer, 16)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- kafkatier.RunTiers(runCtx, kafkatier.TierConfig{Conn: conn, Topics: topics, Group: base + ".webhooks", Clock: clock}, got)
	}()
	defer func() { stop(); <-done }()

	w, err := kafkatier.NewWriter(conn, topics)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b := &webhook.Batch{WebhookID: webhook.NewWebhookID(), EndpointID: "ep", AccountID: "acme", Created: clock.Now(),
		Events: []json.RawMessage{json.RawMessage(`{"event":"processed"}`)}, EventTimes: []int64{clock.Now().Unix()},
		Attempts: 1, Due: clock.Now().Add(50 * time.Second)}
	if err := w.Retry(ctx, []*webhook.Batch{b}); err != nil {
		t.Fatal(err)
	}
	// The tier's partition now waits on the clock for the batch.
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the tier never waited on its clock for the parked batch: %v", err)
	}
	clock.Advance(49 * time.Second)
	select {
	case r := <-got:
		t.Fatalf("%s handed back 1s before it was due", r.WebhookID)
	default:
	}
	clock.Advance(time.Second)
	select {
	case r := <-got:
		if r.WebhookID != b.WebhookID {
			t.Fatalf("redelivered %s, want %s", r.WebhookID, b.WebhookID)
		}
	case <-ctx.Done():
		t.Fatal("the batch was not handed back once its due time passed on the tier's clock")
	}
}

func deleteTopics(broker string, topics []string) {
	c, err := kafka.Dial("tcp", broker)
	if err != nil {
		return
	}
	defer c.Close()
	ctrl, err := c.Controller()
	if err != nil {
		return
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return
	}
	defer cc.Close()
	cc.DeleteTopics(topics...)
}
