package main

import (
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/schemas"
)

// produce --partition-by recipient puts each message where
// consumer.PartitionOf puts its (first) event's account and recipient, for
// single events and arrays, with and without an account_id.
func TestProducePartitionByRecipient(t *testing.T) {
	const n = 8
	parts := []int{0, 1, 2, 3, 4, 5, 6, 7}
	for _, accounts := range [][]string{nil, {"acme", "globex"}} {
		g := eventgen.New(3)
		g.Accounts = accounts
		seen := map[int]bool{}
		for i := range 400 {
			v := g.Message(nil, 1+i%3)
			key := recipientPartitionKey(v)
			if key == nil {
				t.Fatalf("no key for %s", v)
			}
			got := (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: key}, parts...)
			// The worker's decoder says what the event's account and
			// normalised recipient are.
			evs, rejs := (&schemas.Decoder{}).Decode(v, schemas.Coordinates{Topic: "t"}, nil)
			if len(evs) == 0 || len(rejs) > 0 {
				t.Fatalf("%s: decoded %d events, rejections %v", v, len(evs), rejs)
			}
			if want := consumer.PartitionOf(evs[0].AccountID, evs[0].EmailNorm, n); got != want {
				t.Fatalf("%s: partition %d, PartitionOf says %d", v, got, want)
			}
			seen[got] = true
		}
		if len(seen) != n {
			t.Errorf("accounts %v: 400 messages in %d of %d partitions", accounts, len(seen), n)
		}
	}
	if recipientPartitionKey([]byte(`{"event":"processed"`)) != nil {
		t.Error("a malformed message got a key")
	}
}
