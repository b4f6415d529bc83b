package webhook

import (
	"bytes"
	"encoding/json"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
)

// Payloads as SendGrid sends them. A bounce or blocked event is delivered
// with SendGrid's bounce fields that the producer left out filled in from
// bouncer's classification (Config.Classifier):
//
//   - bounce_classification: one of SendGrid's seven classes;
//   - type: "blocked" for a soft classification (reputation, content,
//     rate: the recipient is fine, the sender is not), "bounce" otherwise;
//   - status: the enhanced status code the classifier read, when it read
//     one.
//
// A derived dropped event gets status "5.0.0", as SendGrid's dropped events
// carry. A field the producer set, even to "" or null, is never changed:
// the missing fields are written before the producer's own, whose bytes are
// kept as sent. A subscription with BouncerFields gets bouncer's own
// fields too, under one key, "bouncer" (unless the producer used that key):
//
//	"bouncer": {"bounce_type": "hard", "reason_code": "mailbox_unknown", "rule": "..."}

// bouncerKey is the one key bouncer's own fields go under.
const bouncerKey = "bouncer"

// bouncerFields is the "bouncer" object of a bounce.
type bouncerFields struct {
	BounceType string `json:"bounce_type"`
	ReasonCode string `json:"reason_code"`
	Rule       string `json:"rule"`
}

// filled is one event as delivered: with SendGrid's fields filled in, and
// the same with bouncer's fields too (nil: no fields of bouncer's, send
// plain).
type filled struct {
	plain, extras json.RawMessage
}

func (f *filled) for_(extras bool) json.RawMessage {
	if extras && f.extras != nil {
		return f.extras
	}
	return f.plain
}

// keysOf returns the top-level keys of a JSON object (nil when elem is not
// one).
func keysOf(elem []byte) map[string]bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(elem, &m) != nil {
		return nil
	}
	keys := make(map[string]bool, len(m))
	for k := range m {
		keys[k] = true
	}
	return keys
}

// prepend writes fields (key, JSON value pairs, in order) at the start of
// the object elem, keeping elem's own bytes.
func prepend(elem []byte, fields [][2][]byte) json.RawMessage {
	if len(fields) == 0 {
		return elem
	}
	var b bytes.Buffer
	b.Grow(len(elem) + 64*len(fields))
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(f[0])
		b.WriteByte(':')
		b.Write(f[1])
	}
	rest := bytes.TrimSpace(elem)[1:]
	if r := bytes.TrimSpace(rest); len(r) > 0 && r[0] != '}' {
		b.WriteByte(',')
	}
	b.Write(rest)
	return b.Bytes()
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// fillBounce returns a bounce event (elem, already with its sg_event_id)
// as delivered, classified by c. Without a classifier, or for an element
// that is not an object, it is sent as it is.
func fillBounce(c *enrich.Classifier, elem []byte, ev *schemas.Event) filled {
	if c == nil {
		return filled{plain: elem}
	}
	keys := keysOf(elem)
	if keys == nil {
		return filled{plain: elem}
	}
	res, err := c.Classify(enrich.Input{Event: string(ev.Event), Type: ev.Type, Reason: ev.Reason,
		Response: ev.Response, Status: ev.Status, Email: ev.Email})
	if err != nil {
		return filled{plain: elem}
	}
	var fields [][2][]byte
	add := func(key, value string) {
		if !keys[key] && value != "" {
			fields = append(fields, [2][]byte{jsonString(key), jsonString(value)})
		}
	}
	add("bounce_classification", string(res.Classification))
	typ := "bounce"
	if res.BounceType == enrich.Soft {
		typ = "blocked"
	}
	add("type", typ)
	if res.Status != (enrich.StatusCode{}) {
		add("status", res.Status.String())
	}
	out := filled{plain: prepend(elem, fields)}
	if !keys[bouncerKey] {
		extra, _ := json.Marshal(bouncerFields{BounceType: string(res.BounceType), ReasonCode: string(res.Reason), Rule: res.Rule})
		out.extras = prepend(elem, append(fields, [2][]byte{jsonString(bouncerKey), extra}))
	}
	return out
}

// fillDropped adds SendGrid's status of dropped events to a derived drop.
func fillDropped(elem []byte) json.RawMessage {
	keys := keysOf(elem)
	if keys == nil || keys["status"] {
		return elem
	}
	return prepend(elem, [][2][]byte{{jsonString("status"), jsonString("5.0.0")}})
}
