package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/bouncer-mail/bouncer/internal/retry"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

func TestSplitElements(t *testing.T) {
	cases := []struct {
		name, msg string
		want      []string
	}{
		{"object", ` {"a":1} `, []string{`{"a":1}`}},
		{"array", `[{"a":1}, {"b":"x,]}"} ,{"c":[1,{"d":2}]}]`, []string{`{"a":1}`, `{"b":"x,]}"}`, `{"c":[1,{"d":2}]}`}},
		{"escaped quote", `[{"a":"q\"],"},{"b":2}]`, []string{`{"a":"q\"],"}`, `{"b":2}`}},
		{"scalars", `[1, "x", {"a":1}]`, []string{`1`, `"x"`, `{"a":1}`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := splitElements([]byte(c.msg))
			if len(got) != len(c.want) {
				t.Fatalf("got %d elements %q, want %q", len(got), got, c.want)
			}
			for i := range got {
				if string(got[i]) != c.want[i] {
					t.Errorf("element %d = %s, want %s", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestEventJSONAddsDerivedID(t *testing.T) {
	var dec schemas.Decoder
	msg := []byte(`{"email":"a@example.com","timestamp":1764201600,"event":"open"}`)
	evs, rejs := dec.Decode(msg, schemas.Coordinates{Topic: "t", Partition: 1, Offset: 9}, nil)
	if len(rejs) > 0 || len(evs) != 1 {
		t.Fatalf("decode: %v %v", evs, rejs)
	}
	out := eventJSON(splitElements(msg)[0], &evs[0])
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if m["sg_event_id"] != evs[0].SGEventID || m["event"] != "open" {
		t.Errorf("got %s, want the derived id %s added", out, evs[0].SGEventID)
	}
	d := evs[0]
	d.Event, d.Reason, d.SGEventID = schemas.EventDropped, "Bounced Address", pipeline.DerivedEventID("dropped", evs[0].SGEventID)
	drop := droppedJSON(msg, &d)
	if err := json.Unmarshal(drop, &m); err != nil || m["event"] != "dropped" || m["reason"] != "Bounced Address" {
		t.Errorf("dropped event %s", drop)
	}
}

func TestScheduleNext(t *testing.T) {
	s := Schedule{Delays: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute}, Jitter: 0.1}
	now := time.Unix(1_700_000_000, 0)
	rnd := rand.New(rand.NewPCG(1, 2))
	for attempts, want := range map[int]int{0: 0, 1: 0, 2: 1, 3: 2} {
		tier, due, ok := s.next(attempts, 0, now, rnd)
		d := s.Delays[want]
		if !ok || tier != want || due.Sub(now) < d*9/10 || due.Sub(now) > d*11/10 {
			t.Errorf("after %d attempts: tier %d due in %s ok %v; want tier %d about %s", attempts, tier, due.Sub(now), ok, want, d)
		}
	}
	if _, _, ok := s.next(4, 0, now, rnd); ok {
		t.Errorf("after 4 attempts with 3 delays: want exhausted")
	}
	// Retry-After longer than the step moves the batch to a later tier.
	tier, due, _ := s.next(1, 10*time.Minute, now, rnd)
	if tier != 1 || due.Sub(now) != 10*time.Minute {
		t.Errorf("Retry-After 10m: tier %d due in %s, want tier 1 in 10m", tier, due.Sub(now))
	}
	if _, err := ParseDelays("5s, 1s"); err == nil {
		t.Errorf("decreasing delays accepted")
	}
	if d, err := ParseDelays("5s,5m,2h"); err != nil || len(d) != 3 || TierName(d[2]) != "2h" {
		t.Errorf("ParseDelays: %v %v", d, err)
	}
}

// TestScheduleIsABackOff: the schedule's pauses, as internal/retry runs
// them, are its delays in order (each within its jitter), from the
// position a batch's attempts give, and stop after the last: retry.Do
// with them makes one attempt more than there are delays.
func TestScheduleIsABackOff(t *testing.T) {
	s := Schedule{}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, attempts := range []int{0, 1, 4} {
		b := s.BackOff(attempts, rnd)
		for _, d := range s.Delays[max(attempts-1, 0):] {
			if got := b.NextBackOff(); got < d*9/10 || got > d*11/10 {
				t.Errorf("after %d attempts: pause %s, want %s ±10%%", attempts, got, d)
			}
		}
		if got := b.NextBackOff(); got != backoff.Stop {
			t.Errorf("after %d attempts: %s after the last delay, want Stop", attempts, got)
		}
	}
	short := Schedule{Delays: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}, Jitter: 0.1}
	calls := 0
	err := retry.Do(context.Background(), retry.Policy{Pauses: func() backoff.BackOff { return short.BackOff(0, nil) }}, func() error {
		calls++
		return errors.New("endpoint down")
	})
	if err == nil || calls != 4 {
		t.Errorf("retry.Do on a 3-delay schedule: %d attempts (err %v), want 4", calls, err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q = %s, want %s", v, got, want)
		}
	}
}
