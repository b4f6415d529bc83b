package benchrun

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestReportMedians: the summary holds the median rate, the median ratio to
// the peer's best consumer count of each run, and the worker's CPU per event.
func TestReportMedians(t *testing.T) {
	const count = 1_000_000
	run := func(bouncer, peer1, peer2 time.Duration, cpu time.Duration) []benchResult {
		return []benchResult{
			{name: "bouncer worker", bouncer: true, elapsed: bouncer, cpu: [3]time.Duration{cpuWorker: cpu}},
			{name: "peer, 1 consumer", elapsed: peer1},
			{name: "peer, 2 consumers", elapsed: peer2},
		}
	}
	runs := [][]benchResult{
		run(10*time.Second, 20*time.Second, 5*time.Second, 4*time.Second), // 100k/s, best peer 200k/s: 0.50
		run(5*time.Second, 10*time.Second, 20*time.Second, 2*time.Second), // 200k/s, best peer 100k/s: 2.00
		run(8*time.Second, 10*time.Second, 10*time.Second, 3*time.Second), // 125k/s, peer 100k/s: 1.25
	}
	var out strings.Builder
	if err := report(&out, count, 4, 50000, false, false, 1, runs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bouncer worker                  125000 events/s",
		"ratio bouncer/peer              1.25  (runs: 0.50, 2.00, 1.25)",
		"worker CPU per event            3.00 µs",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if got := median([]float64{3, 1, 2, 10}); got != 2.5 {
		t.Errorf("median of 1 2 3 10: %v, want 2.5", got)
	}
}

// With misplaced shares, each run measures one worker per share; the
// summary compares each with the first, run by run.
func TestReportMisplaced(t *testing.T) {
	const count = 1_000_000
	run := func(first, second, cpu1, cpu2 time.Duration) []benchResult {
		return []benchResult{
			{name: "bouncer worker, 0% misplaced", bouncer: true, elapsed: first, cpu: [3]time.Duration{cpuWorker: cpu1}},
			{name: "bouncer worker, 100% misplaced", bouncer: true, elapsed: second, cpu: [3]time.Duration{cpuWorker: cpu2}},
			{name: "peer, 1 consumer", elapsed: 10 * time.Second},
		}
	}
	runs := [][]benchResult{
		run(10*time.Second, 20*time.Second, 4*time.Second, 6*time.Second),         // x0.50, CPU x1.50
		run(10*time.Second, 12500*time.Millisecond, 4*time.Second, 5*time.Second), // x0.80, x1.25
		run(10*time.Second, 10*time.Second, 4*time.Second, 4*time.Second),         // x1.00, x1.00
	}
	var out strings.Builder
	if err := report(&out, count, 4, 50000, false, false, 2, runs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"80000 events/s, worker CPU 5.00 s/M",
		"events/s x0.80 (runs: 0.50, 0.80, 1.00), worker CPU x1.25 (runs: 1.50, 1.25, 1.00)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// The misplaced balancer puts the given share of recipients in another
// partition than consumer.PartitionOf, the rest where it says.
func TestMisplacedBalancer(t *testing.T) {
	parts := []int{0, 1, 2, 3}
	for _, share := range []int{0, 30, 100} {
		misplaced := 0
		for i := range 1000 {
			addr := fmt.Sprintf("user%d@example.com", i)
			got := misplacedBalancer(share).Balance(kafka.Message{Key: []byte(addr)}, parts...)
			if got != consumer.PartitionOf(schemas.DefaultAccountID, addr, 4) {
				misplaced++
			}
		}
		if lo, hi := share*10-60, share*10+60; misplaced < lo || misplaced > hi {
			t.Errorf("share %d%%: %d of 1000 recipients misplaced", share, misplaced)
		}
	}
}
