package webhook

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Batch is one delivery: events of one endpoint sent in one request under
// one webhook-id. A batch that failed travels as JSON through the retry
// tiers and, when given up, to the dead-letter topic and the failed-batches
// table; its WebhookID never changes on the way.
type Batch struct {
	WebhookID  string `json:"webhook_id"`
	EndpointID string `json:"endpoint_id"`
	AccountID  string `json:"account_id"`
	// Attempts is the number of attempts made so far.
	Attempts int `json:"attempts"`
	// Tier is the index in the schedule of the retry tier the batch is
	// parked in; Due is when its next attempt may start.
	Tier int       `json:"tier"`
	Due  time.Time `json:"due"`
	// Created is when the batch was formed.
	Created time.Time `json:"created"`
	// Events are the event objects as the producer sent them (with the
	// sg_event_id bouncer derived added when the producer sent none).
	Events []json.RawMessage `json:"events"`
	// EventTimes are the events' timestamps (unix seconds), for the
	// end-to-end latency.
	EventTimes []int64 `json:"event_times,omitempty"`
	// LastStatus and LastError describe the last attempt's failure.
	LastStatus int    `json:"last_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
	// Reason says why a batch was given up (exhausted, gone, disabled...).
	Reason string `json:"reason,omitempty"`
	// ReplayOf is the webhook-id of the failed batch this one replays.
	ReplayOf string `json:"replay_of,omitempty"`
}

// Body is the request body: SendGrid's format, a JSON array of the events.
func (b *Batch) Body() []byte {
	n := 2
	for _, e := range b.Events {
		n += len(e) + 1
	}
	buf := make([]byte, 0, n)
	buf = append(buf, '[')
	for i, e := range b.Events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	return append(buf, ']')
}

// Marshal encodes a batch for a Kafka message.
func (b *Batch) Marshal() ([]byte, error) { return json.Marshal(b) }

// UnmarshalBatch decodes a batch from a Kafka message and checks that it
// can be delivered.
func UnmarshalBatch(p []byte) (*Batch, error) {
	var b Batch
	dec := json.NewDecoder(bytes.NewReader(p))
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("webhook batch: %w", err)
	}
	switch {
	case b.WebhookID == "":
		return nil, fmt.Errorf("webhook batch: no webhook_id")
	case b.EndpointID == "":
		return nil, fmt.Errorf("webhook batch %s: no endpoint_id", b.WebhookID)
	case len(b.Events) == 0:
		return nil, fmt.Errorf("webhook batch %s: no events", b.WebhookID)
	}
	return &b, nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewWebhookID returns a fresh webhook-id: "msg_" and 26 random base32
// characters (128 bits).
func NewWebhookID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported systems
	}
	return "msg_" + strings.ToLower(idEncoding.EncodeToString(b[:]))
}
