package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// WriteCopies against a real broker: each routed partition gets its
// copies in the order given, over several produce requests (a small
// request bound here), each with the source message's key, value and time
// and headers that SourceOf reads back.
func TestCopyWriterKeepsOrder(t *testing.T) {
	brokers := testenv.Kafka(t)
	conn := Conn{Brokers: testenv.Brokers(brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := RoutedTopic(fmt.Sprintf("test.route.%d", time.Now().UnixNano()))
	if err := EnsureRoutedTopic(ctx, conn, topic, 3); err != nil {
		t.Fatal(err)
	}
	w, err := NewCopyWriter(conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	w.maxBytes = 300 // a few copies per request
	at := time.Unix(1764201600, 0)
	var src []Message
	var copies []Copy
	for i := range 60 {
		src = append(src, Message{Topic: "t", Partition: 1, Offset: int64(100 + i), Key: []byte(fmt.Sprintf("k%d", i)),
			Value: []byte(fmt.Sprintf(`{"event":"processed","email":"r%d@example.com","timestamp":%d}`, i, at.Unix())), Time: at.Add(time.Duration(i) * time.Second)})
	}
	for i := range src {
		copies = append(copies, Copy{Partition: []int{0, 2}[i%2], Source: &src[i], MaxTimestamp: at.Unix() + 3600})
	}
	if err := w.WriteCopies(ctx, copies); err != nil {
		t.Fatal(err)
	}
	for p, first := range map[int]int{0: 0, 2: 1} {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: conn.Brokers, Topic: topic, Partition: p, MaxWait: 500 * time.Millisecond})
		for i := first; i < len(src); i += 2 {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d: %v", p, err)
			}
			msg := Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time, Headers: m.Headers}
			from, ok := SourceOf(&msg)
			if !ok || from.Partition != 1 || from.Offset != src[i].Offset || from.MaxTimestamp != at.Unix()+3600 {
				t.Fatalf("partition %d, copy %d: source %+v (%v), want 1/%d", p, i, from, ok, src[i].Offset)
			}
			if string(m.Key) != string(src[i].Key) || string(m.Value) != string(src[i].Value) || !m.Time.Equal(src[i].Time) {
				t.Fatalf("partition %d, copy %d: key %q time %s, want %q %s", p, i, m.Key, m.Time, src[i].Key, src[i].Time)
			}
		}
		r.Close()
	}
	if _, ok := SourceOf(&Message{Value: []byte("{}")}); ok {
		t.Error("SourceOf of a message without headers: ok")
	}
}
