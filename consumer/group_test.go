package consumer

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestStartOffset(t *testing.T) {
	tests := []struct {
		name            string
		committed, next int64
		want            int64
	}{
		{"nothing known: the log's start", -2, 0, kafka.FirstOffset},
		{"no commit, sink holds offsets up to 41", -2, 42, 42},
		{"commit ahead of the sink (a tail of bad messages)", 100, 42, 100},
		{"sink ahead of the commit (crash before commit)", 100, 150, 150},
		{"both agree", 77, 77, 77},
		{"commit at zero", 0, 0, 0},
	}
	for _, tt := range tests {
		if got := startOffset(tt.committed, tt.next); got != tt.want {
			t.Errorf("%s: startOffset(%d, %d) = %d, want %d", tt.name, tt.committed, tt.next, got, tt.want)
		}
	}
}

func TestGroupConfigValidate(t *testing.T) {
	ok := GroupConfig{Conn: Conn{Brokers: []string{"127.0.0.1:9092"}}, Topic: "t", GroupID: "g"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.MaxBatchMessages != 20000 || ok.MaxWait != 500*time.Millisecond || ok.HandleTimeout >= ok.RebalanceTimeout {
		t.Errorf("defaults not filled: %+v", ok)
	}
	bad := []struct {
		cfg  GroupConfig
		want string
	}{
		{GroupConfig{Topic: "t", GroupID: "g"}, "KAFKA_BROKERS"},
		{GroupConfig{Conn: Conn{Brokers: []string{"nohost"}}, Topic: "t", GroupID: "g"}, "host:port"},
		{GroupConfig{Conn: Conn{Brokers: []string{"h:1"}}, GroupID: "g"}, "topic"},
		{GroupConfig{Conn: Conn{Brokers: []string{"h:1"}}, Topic: "t"}, "group"},
		{GroupConfig{Conn: Conn{Brokers: []string{"h:1"}, SASLMechanism: "gssapi"}, Topic: "t", GroupID: "g"}, "SASL"},
		{GroupConfig{Conn: Conn{Brokers: []string{"h:1"}}, Topic: "t", GroupID: "g", HandleTimeout: time.Minute, RebalanceTimeout: 30 * time.Second}, "rebalance timeout"},
	}
	for _, b := range bad {
		if err := b.cfg.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: err %v, want mention of %q", b.cfg, err, b.want)
		}
	}
}

func TestConnMechanisms(t *testing.T) {
	for _, m := range []string{"", "plain", "SCRAM-SHA-256", "scram-sha-512"} {
		c := Conn{Brokers: []string{"h:1"}, SASLMechanism: m, SASLUsername: "u", SASLPassword: "p", TLS: true}
		d, err := c.Dialer()
		if err != nil {
			t.Errorf("%q: %v", m, err)
			continue
		}
		if (m != "") != (d.SASLMechanism != nil) || d.TLS == nil {
			t.Errorf("%q: dialer SASL %v TLS %v", m, d.SASLMechanism, d.TLS)
		}
	}
}

// TestFillWait: a batch waits MaxWait to fill, and backlogFill times that
// when the partition already holds a full batch after its first message.
func TestFillWait(t *testing.T) {
	g := &Group{cfg: GroupConfig{Topic: "events", Topics: []string{"events.routed"}, MaxBatchMessages: 100,
		MaxWait: 500 * time.Millisecond, TopicsMaxWait: 100 * time.Millisecond}}
	for _, c := range []struct {
		topic       string
		offset, hwm int64
		want        time.Duration
	}{
		{"events", 0, 1, 500 * time.Millisecond},   // the only message
		{"events", 0, 100, 500 * time.Millisecond}, // 99 more: not a full batch
		{"events", 0, 101, 5 * time.Second},        // a full batch behind the first message
		{"events", 50, 10_000, 5 * time.Second},
		// The routed copies' topic (Topics) waits TopicsMaxWait.
		{"events.routed", 0, 1, 100 * time.Millisecond},
		{"events.routed", 0, 101, time.Second},
	} {
		if got := g.fillWait(c.topic, c.offset, c.hwm); got != c.want {
			t.Errorf("%s offset %d, high-water mark %d: %s, want %s", c.topic, c.offset, c.hwm, got, c.want)
		}
	}
	// Unset, it is MaxWait.
	cfg := GroupConfig{Conn: Conn{Brokers: []string{"127.0.0.1:9092"}}, Topic: "events", GroupID: "g", MaxWait: 300 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.TopicsMaxWait != 300*time.Millisecond {
		t.Errorf("TopicsMaxWait %s by default, want MaxWait's 300ms", cfg.TopicsMaxWait)
	}
}
