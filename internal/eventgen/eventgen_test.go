package eventgen

import (
	"encoding/json"
	"testing"
	"time"
)

func timestamps(t *testing.T, g *Generator, n int) []int64 {
	t.Helper()
	out := make([]int64, n)
	for i := range out {
		b, _ := g.Next(nil)
		var ev struct {
			Timestamp int64 `json:"timestamp"`
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, b)
		}
		out[i] = ev.Timestamp
	}
	return out
}

func TestTimestamps(t *testing.T) {
	// The default stream: 50 events a second from BaseTime, as the
	// benchmarks and tests have always had it.
	for i, ts := range timestamps(t, New(1), 200) {
		if want := int64(1764201600 + (i+1)/50); ts != want {
			t.Fatalf("default stream: event %d at %d, want %d", i+1, ts, want)
		}
	}
	// A stream spread over two weeks (produce --since 336h): 200,000
	// events a step apart after BaseTime, the last one two weeks on.
	g := New(1)
	g.BaseTime = 1_800_000_000
	g.Step = 336 * time.Hour / 200_000
	ts := timestamps(t, g, 200_000)
	if want := g.BaseTime + int64(g.Step/time.Second); ts[0] != want {
		t.Errorf("first event at %d, want %d", ts[0], want)
	}
	if end := g.BaseTime + int64(336*time.Hour/time.Second); ts[len(ts)-1] != end {
		t.Errorf("last event at %d, want %d (two weeks on)", ts[len(ts)-1], end)
	}
	for i := 1; i < len(ts); i++ {
		if ts[i] < ts[i-1] {
			t.Fatalf("event %d at %d goes back from %d", i+1, ts[i], ts[i-1])
		}
	}
}
