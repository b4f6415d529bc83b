package schemas

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchBounce is a realistic single SendGrid bounce event (433 bytes).
const benchBounce = `{"email":"john.smith@example.com","timestamp":1700000200,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"bounce","category":["newsletter"],"sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","reason":"550 5.1.1 The email account that you tried to reach does not exist.","status":"5.1.1","type":"bounce","bounce_classification":"Invalid Address","ip":"192.0.2.10","tls":1}`

// benchBatch is a 10-event array of the same event.
var benchBatch = "[" + strings.TrimSuffix(strings.Repeat(benchBounce+",", 10), ",") + "]"

// stdEvent is the peer: the same fields, decoded by encoding/json (which does
// none of the contract's checks, so it is a lower bound on its cost).
type stdEvent struct {
	Email                string          `json:"email"`
	Timestamp            int64           `json:"timestamp"`
	SMTPID               string          `json:"smtp-id"`
	Event                string          `json:"event"`
	Category             json.RawMessage `json:"category"`
	SGEventID            string          `json:"sg_event_id"`
	SGMessageID          string          `json:"sg_message_id"`
	Reason               string          `json:"reason"`
	Status               string          `json:"status"`
	Response             string          `json:"response"`
	Attempt              json.RawMessage `json:"attempt"`
	Type                 string          `json:"type"`
	BounceClassification string          `json:"bounce_classification"`
	IP                   string          `json:"ip"`
	TLS                  int             `json:"tls"`
	URL                  string          `json:"url"`
	UserAgent            string          `json:"useragent"`
	ASMGroupID           int64           `json:"asm_group_id"`
	FromEmail            string          `json:"from_email"`
	Subject              string          `json:"subject"`
	AccountID            string          `json:"account_id"`
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		msg  []byte
		n    int
	}{
		{"single", []byte(benchBounce), 1},
		{"batch10", []byte(benchBatch), 10},
	} {
		b.Run(bc.name+"/bouncer", func(b *testing.B) {
			var d Decoder
			events := make([]Event, 0, bc.n)
			b.SetBytes(int64(len(bc.msg)))
			b.ReportAllocs()
			for b.Loop() {
				var rejs []Rejection
				events, rejs = d.Decode(bc.msg, Coordinates{Topic: "events", Partition: 1, Offset: 1}, events[:0])
				if len(events) != bc.n || len(rejs) != 0 {
					b.Fatalf("decoded %d events, %v", len(events), summarize(rejs))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.n), "ns/event")
		})
		b.Run(bc.name+"/encoding_json", func(b *testing.B) {
			b.SetBytes(int64(len(bc.msg)))
			b.ReportAllocs()
			for b.Loop() {
				if bc.n == 1 {
					var e stdEvent
					if err := json.Unmarshal(bc.msg, &e); err != nil {
						b.Fatal(err)
					}
				} else {
					var es []stdEvent
					if err := json.Unmarshal(bc.msg, &es); err != nil || len(es) != bc.n {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.n), "ns/event")
		})
	}
}

func TestBenchInputs(t *testing.T) {
	if n := len(benchBounce); n < 420 || n > 440 {
		t.Errorf("benchBounce is %d bytes, want about 430", n)
	}
	checkAgainstOracle(t, "benchBounce", []byte(benchBounce), &Decoder{})
	checkAgainstOracle(t, "benchBatch", []byte(benchBatch), &Decoder{})
}
