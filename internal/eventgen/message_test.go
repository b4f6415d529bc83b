package eventgen

import (
	"encoding/json"
	"testing"
)

// TestMessageAndBad: a message of n events is one object for n = 1 and an
// array of n objects otherwise, keyed by its first recipient; the bad
// messages are all invalid JSON objects or events and repeat in order.
func TestMessageAndBad(t *testing.T) {
	g := New(7)
	var one map[string]any
	m := g.Message(nil, 1)
	if err := json.Unmarshal(m, &one); err != nil || one["email"] == nil || string(RecipientKey(m)) != one["email"] {
		t.Fatalf("one event: %s (%v), key %q", m, err, RecipientKey(m))
	}
	var three []map[string]any
	m = g.Message(nil, 3)
	if err := json.Unmarshal(m, &three); err != nil || len(three) != 3 || string(RecipientKey(m)) != three[0]["email"] {
		t.Fatalf("three events: %s (%v)", m, err)
	}
	seen := map[string]bool{}
	for i := range len(badPayloads) {
		seen[string(Bad(i))] = true
		if string(Bad(i)) != string(Bad(i+len(badPayloads))) {
			t.Errorf("Bad(%d) and Bad(%d) differ", i, i+len(badPayloads))
		}
	}
	if len(seen) != len(badPayloads) {
		t.Errorf("%d distinct bad messages, want %d", len(seen), len(badPayloads))
	}
}
