package benchrun

import (
	"strings"
	"testing"
	"time"
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
	if err := report(&out, count, 4, 50000, false, false, runs); err != nil {
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
