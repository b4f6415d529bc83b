package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// A broker that refuses connections when the worker starts (it is still
// starting) must not make EnsureTopic fail: it waits and creates the topic
// once the broker answers. The bootstrap address here is a proxy to the real
// broker that starts listening only after a second.
func TestEnsureTopicWaitsForABrokerThatIsStarting(t *testing.T) {
	brokers := testenv.Brokers(testenv.Kafka(t))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // refused until the proxy below listens again on the same port

	proxyUp := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		pl, err := net.Listen("tcp", addr)
		proxyUp <- err
		if err != nil {
			return
		}
		t.Cleanup(func() { pl.Close() })
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go forward(c, brokers[0])
		}
	}()

	// Nothing listens yet: the first attempts are refused.
	if _, err := net.DialTimeout("tcp", addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("the proxy port should refuse at first, got %v", err)
	}
	topic := fmt.Sprintf("test.ensuretopic.%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := EnsureTopic(ctx, Conn{Brokers: []string{addr}}, topic, 2); err != nil {
		t.Fatalf("EnsureTopic through a broker that starts late: %v", err)
	}
	if err := <-proxyUp; err != nil {
		t.Fatalf("proxy could not listen again on %s: %v", addr, err)
	}
	conn, err := kafka.Dial("tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("read partitions of %s: %v", topic, err)
	}
	if len(ps) != 2 {
		t.Fatalf("topic %s has %d partitions, want 2", topic, len(ps))
	}
	// The default replication factor is min(3, brokers): one here.
	if len(ps[0].Replicas) != 1 {
		t.Fatalf("topic %s has %d replicas on a single broker, want 1", topic, len(ps[0].Replicas))
	}
}

func TestTopicConfigReplication(t *testing.T) {
	compact := kafka.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"}
	minISR := func(n string) kafka.ConfigEntry {
		return kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: n}
	}
	for _, tc := range []struct {
		name                 string
		replication, brokers int
		configs              []kafka.ConfigEntry
		wantRF               int
		wantConfigs          []kafka.ConfigEntry
	}{
		{"default on one broker", 0, 1, nil, 1, nil},
		{"default on two brokers: one in-sync replica is enough", 0, 2, nil, 2, nil},
		{"default on three brokers", 0, 3, []kafka.ConfigEntry{compact}, 3, []kafka.ConfigEntry{compact, minISR("2")}},
		{"default stops at three", 0, 7, nil, 3, []kafka.ConfigEntry{minISR("2")}},
		{"explicit factor wins", 5, 7, nil, 5, []kafka.ConfigEntry{minISR("2")}},
		{"explicit one on a cluster", 1, 3, nil, 1, nil},
		{"caller's min.insync.replicas is kept", 0, 3, []kafka.ConfigEntry{minISR("3")}, 3, []kafka.ConfigEntry{minISR("3")}},
		{"no broker reported", 0, 0, nil, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := topicConfig("t", 4, tc.replication, tc.brokers, tc.configs)
			if cfg.ReplicationFactor != tc.wantRF || cfg.NumPartitions != 4 || !slices.Equal(cfg.ConfigEntries, tc.wantConfigs) {
				t.Errorf("topicConfig = factor %d, %d partitions, configs %v; want factor %d, configs %v",
					cfg.ReplicationFactor, cfg.NumPartitions, cfg.ConfigEntries, tc.wantRF, tc.wantConfigs)
			}
		})
	}
}

// EnsureTopic gives up when its context ends and says what it could not reach.
func TestEnsureTopicStopsWithItsContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err = EnsureTopic(ctx, Conn{Brokers: []string{addr}}, "never-created", 1)
	if err == nil {
		t.Fatal("EnsureTopic succeeded with no broker listening")
	}
	if ctx.Err() == nil {
		t.Fatalf("EnsureTopic gave up before its context ended: %v", err)
	}
}

func forward(c net.Conn, to string) {
	defer c.Close()
	u, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer u.Close()
	go io.Copy(u, c)
	io.Copy(c, u)
}

// A Writer created right after EnsureTopic writes at once: EnsureTopic
// returns only when every broker knows the topic and its leaders (a Writer
// keeps the first metadata it reads, and one read from a broker that had
// not caught up failed with "Unknown Topic Or Partition").
func TestWriteRightAfterEnsureTopic(t *testing.T) {
	brokers := testenv.Brokers(testenv.Kafka(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 20 {
		topic := fmt.Sprintf("test.writeafterensure.%d.%d", time.Now().UnixNano(), i)
		if err := EnsureTopic(ctx, Conn{Brokers: brokers}, topic, 4); err != nil {
			t.Fatal(err)
		}
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Transport: &kafka.Transport{}}
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")})
		w.Close()
		if err != nil {
			t.Fatalf("topic %d: write right after EnsureTopic: %v", i, err)
		}
	}
}
