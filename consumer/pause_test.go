package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/segmentio/kafka-go"
)

// flakyFetcher fails its next fails fetches, then succeeds once.
type flakyFetcher struct{ fails int }

func (f *flakyFetcher) FetchMessage(context.Context) (kafka.Message, error) {
	if f.fails > 0 {
		f.fails--
		return kafka.Message{}, errors.New("broker not available")
	}
	return kafka.Message{Offset: 7}, nil
}

// flakyGroup fails its next fails waits for a generation, then closes.
type flakyGroup struct{ fails int }

func (g *flakyGroup) Next(context.Context) (*kafka.Generation, error) {
	if g.fails > 0 {
		g.fails--
		return nil, errors.New("coordinator not available")
	}
	return nil, kafka.ErrGroupClosed
}

// advancing advances clock by whatever it is asked to wait for, until ctx
// ends, so the pauses pass at once.
func advancing(ctx context.Context, clock *clockwork.FakeClock) {
	for {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			return
		}
		clock.Advance(time.Hour)
	}
}

// within reports whether got is d spread by at most 20% either way.
func within(got, d time.Duration) bool { return got >= d*8/10 && got <= d*12/10 }

// TestFailurePausesGrowAndReset: after failed fetches the pauses start at
// 500ms (as the fixed pause was) and double up to 5s; a fetch that
// succeeds starts them over. A failed wait for a generation pauses 1s,
// doubling up to 10s, and a closed group ends the waiting at once.
func TestFailurePausesGrowAndReset(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clock := clockwork.NewFakeClock()
	go advancing(ctx, clock)

	var pauses []time.Duration
	p := fetchPolicy
	p.Clock = clock
	p.Notify = func(_ error, pause time.Duration) { pauses = append(pauses, pause) }
	f := &flakyFetcher{fails: 5}
	m, err := fetchAgain(ctx, f, errors.New("first fetch failed"), p)
	if err != nil || m.Offset != 7 {
		t.Fatalf("fetchAgain: %v %v, want the message after the failures", m.Offset, err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if len(pauses) != len(want) {
		t.Fatalf("pauses %v, want about %v", pauses, want)
	}
	for i := range want {
		if !within(pauses[i], want[i]) {
			t.Errorf("pause %d: %s, want %s ±20%%", i, pauses[i], want[i])
		}
	}
	pauses = nil
	if _, err := fetchAgain(ctx, f, errors.New("failed again"), p); err != nil || len(pauses) != 1 || !within(pauses[0], 500*time.Millisecond) {
		t.Errorf("after a success: pauses %v (err %v), want one of about 500ms", pauses, err)
	}

	pauses = nil
	p = nextPolicy
	p.Clock = clock
	p.Notify = func(_ error, pause time.Duration) { pauses = append(pauses, pause) }
	_, err = nextGeneration(ctx, &flakyGroup{fails: 5}, p)
	if !errors.Is(err, kafka.ErrGroupClosed) {
		t.Errorf("nextGeneration on a closed group: %v, want ErrGroupClosed", err)
	}
	want = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
	if len(pauses) != len(want) {
		t.Fatalf("generation pauses %v, want about %v", pauses, want)
	}
	for i := range want {
		if !within(pauses[i], want[i]) {
			t.Errorf("generation pause %d: %s, want %s ±20%%", i, pauses[i], want[i])
		}
	}

	stopped, stop := context.WithCancel(ctx)
	stop()
	if _, err := fetchAgain(stopped, &flakyFetcher{}, errors.New("failed"), p); err == nil {
		t.Error("fetchAgain on an ended context: no error")
	}
}
