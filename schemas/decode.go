package schemas

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// Limits.
const (
	// DefaultMaxMessageBytes is Decoder.MaxMessageBytes when unset: 1 MiB.
	DefaultMaxMessageBytes = 1 << 20
	// DefaultMaxDepth is Decoder.MaxDepth when unset.
	DefaultMaxDepth = 32
	// maxMaxDepth bounds Decoder.MaxDepth.
	maxMaxDepth = 255
	// messageDepthLimit bounds the nesting of a whole message (a batch adds
	// one level to its elements); beyond it the whole message is rejected
	// with too_deep and scanning stops.
	messageDepthLimit = 256
)

// Decoder decodes Kafka messages holding SendGrid events. The zero value is
// ready to use. A Decoder keeps scratch buffers between calls, so it must be
// used by one goroutine at a time; give each worker goroutine its own.
type Decoder struct {
	// MaxMessageBytes is the largest message accepted, in bytes; a longer one
	// is rejected whole with CodeOversize. 0 means DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxDepth is the deepest nesting of arrays and objects allowed inside
	// one event, counting the event object itself as 1 (so a category array
	// is depth 2). 0 means DefaultMaxDepth; values are clamped to 2..255.
	MaxDepth int
	// MaxTimestamp, when above 0, is the latest event time accepted (unix
	// seconds): an event dated later is rejected with CodeFutureTimestamp.
	// The sink group sets it per message from the message's Kafka time and
	// its clock skew bound (pipeline.Config.MaxFutureSkew), because an event
	// dated in the future would order after every delete made before that
	// date. 0: no bound beyond the schema's.
	MaxTimestamp int64

	// per-call state
	b        []byte
	i        int
	base     int // 1 inside a batch array, else 0
	maxDepth int
	fatal    RejectCode
	fatalMsg string
	prob     RejectCode
	probMsg  string

	// scratch kept between calls
	arena  []byte // the strings of accepted events, one allocation per message
	custom []byte
	kbuf   []byte
	vbuf   []byte
	s1, s2 []byte
	idbuf  []byte
	keys   []keyRef
	cats   []span
	pend   []pending
}

type span struct{ off, end int }

// String slots of a pending event: the known string fields use their key
// number; the rest follow.
const (
	sNorm = nKnown + iota
	sDomain
	sCustom
	sEventID
	nSlots
)

// pending is an accepted event whose strings still live in d.arena.
type pending struct {
	ev           int
	f            [nSlots]span
	catLo, catHi int
}

// Known keys.
const (
	kEvent = iota
	kEmail
	kTimestamp
	kSGEventID
	kSGMessageID
	kSMTPID
	kCategory
	kReason
	kStatus
	kResponse
	kAttempt
	kType
	kBounceClass
	kIP
	kTLS
	kURL
	kUserAgent
	kASMGroupID
	kFromEmail
	kSubject
	kAccountID
	nKnown
)

var knownNames = [nKnown]string{
	"event", "email", "timestamp", "sg_event_id", "sg_message_id", "smtp-id",
	"category", "reason", "status", "response", "attempt", "type",
	"bounce_classification", "ip", "tls", "url", "useragent", "asm_group_id",
	"from_email", "subject", "account_id",
}

func knownKey(k []byte) int {
	switch string(k) {
	case "event":
		return kEvent
	case "email":
		return kEmail
	case "timestamp":
		return kTimestamp
	case "sg_event_id":
		return kSGEventID
	case "sg_message_id":
		return kSGMessageID
	case "smtp-id":
		return kSMTPID
	case "category":
		return kCategory
	case "reason":
		return kReason
	case "status":
		return kStatus
	case "response":
		return kResponse
	case "attempt":
		return kAttempt
	case "type":
		return kType
	case "bounce_classification":
		return kBounceClass
	case "ip":
		return kIP
	case "tls":
		return kTLS
	case "url":
		return kURL
	case "useragent":
		return kUserAgent
	case "asm_group_id":
		return kASMGroupID
	case "from_email":
		return kFromEmail
	case "subject":
		return kSubject
	case "account_id":
		return kAccountID
	}
	return -1
}

func eventType(v []byte) (EventType, bool) {
	switch string(v) {
	case "processed":
		return EventProcessed, true
	case "delivered":
		return EventDelivered, true
	case "deferred":
		return EventDeferred, true
	case "bounce":
		return EventBounce, true
	case "dropped":
		return EventDropped, true
	case "open":
		return EventOpen, true
	case "click":
		return EventClick, true
	case "spamreport":
		return EventSpamReport, true
	case "unsubscribe":
		return EventUnsubscribe, true
	case "group_unsubscribe":
		return EventGroupUnsubscribe, true
	case "group_resubscribe":
		return EventGroupResubscribe, true
	}
	return "", false
}

// fail records a message-level rejection and returns false.
func (d *Decoder) fail(code RejectCode, detail string) bool {
	if d.fatal == "" {
		d.fatal, d.fatalMsg = code, detail
	}
	return false
}

// problem records the first problem of the current element.
func (d *Decoder) problem(code RejectCode, detail string) {
	if d.prob == "" {
		d.prob, d.probMsg = code, detail
	}
}

// Decode decodes msg, one event object or a non-empty JSON array of them,
// read from Kafka at coordinates at. It appends the good events to events and
// returns it, with one Rejection per bad element, or a single Rejection with
// Index -1 when the message as a whole is bad (then no event is appended).
// Every element ends up in exactly one of the two. Decode never panics and
// keeps no reference to msg.
func (d *Decoder) Decode(msg []byte, at Coordinates, events []Event) ([]Event, []Rejection) {
	limit := d.MaxMessageBytes
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	if len(msg) > limit {
		return events, msgRejection(CodeOversize, fmt.Sprintf("message is %d bytes, over the %d-byte limit", len(msg), limit), msg)
	}
	d.maxDepth = d.MaxDepth
	if d.maxDepth <= 0 {
		d.maxDepth = DefaultMaxDepth
	}
	d.maxDepth = min(max(d.maxDepth, 2), maxMaxDepth)
	d.b, d.i, d.base = msg, 0, 0
	d.fatal, d.fatalMsg = "", ""
	d.arena, d.cats, d.pend, d.keys = d.arena[:0], d.cats[:0], d.pend[:0], d.keys[:0]
	defer func() { d.b = nil }()

	d.ws()
	if d.i == len(msg) {
		return events, msgRejection(CodeEmpty, "message is empty", msg)
	}
	n0 := len(events)
	var rejs []Rejection
	ok := true
	switch d.b[d.i] {
	case '{':
		events, rejs, ok = d.element(0, at, events, rejs)
	case '[':
		d.base = 1
		d.i++
		d.ws()
		if d.peek() == ']' {
			d.i++
			if ok = d.end(); ok {
				ok = d.fail(CodeEmptyArray, "message is an empty array")
			}
			break
		}
		for idx := 0; ok; idx++ {
			d.ws()
			if events, rejs, ok = d.element(idx, at, events, rejs); !ok {
				break
			}
			d.ws()
			if c := d.peek(); c == ']' {
				d.i++
				break
			} else if c != ',' {
				ok = d.syntax("want ',' or ']' after array element")
				break
			}
			d.i++
		}
	default:
		c := d.b[d.i]
		if ok = d.skip(0, false) && d.end(); ok {
			ok = d.fail(CodeWrongType, "message: want object or array of objects, got "+kindName(c))
		}
	}
	if ok {
		ok = d.end()
	}
	if !ok {
		return events[:n0], msgRejection(d.fatal, d.fatalMsg, msg)
	}
	d.finish(events)
	return events, rejs
}

// end checks that only white space is left.
func (d *Decoder) end() bool {
	d.ws()
	if d.i != len(d.b) {
		return d.syntax("unexpected data after the top-level value")
	}
	return true
}

func msgRejection(code RejectCode, detail string, msg []byte) []Rejection {
	return []Rejection{{Index: -1, Code: code, Detail: detail, Raw: bytes.Clone(msg)}}
}

func kindName(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// element decodes the element at the cursor. ok is false on a message-level
// failure (d.fatal says which).
func (d *Decoder) element(idx int, at Coordinates, events []Event, rejs []Rejection) (_ []Event, _ []Rejection, ok bool) {
	start := d.i
	d.prob, d.probMsg = "", ""
	if c := d.peek(); c != '{' {
		if c == 0 {
			return events, rejs, d.syntax("unexpected end of input")
		}
		d.problem(CodeWrongType, fmt.Sprintf("element %d: want object, got %s", idx, kindName(c)))
		if !d.skip(0, false) {
			return events, rejs, false
		}
		return events, append(rejs, d.rejection(idx, start)), true
	}
	if !d.enter(1) {
		return events, rejs, false
	}
	arenaMark, catsMark := len(d.arena), len(d.cats)
	events = append(events, Event{Topic: at.Topic, Partition: at.Partition, Offset: at.Offset, Index: idx})
	ev := &events[len(events)-1]
	p := pending{ev: len(events) - 1, catLo: len(d.cats)}
	var seen uint32
	d.custom = d.custom[:0]
	custom := d.newKeySet()

	d.i++
	d.ws()
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			if d.peek() != '"' {
				return events, rejs, d.syntax("want object key")
			}
			kstart := d.i
			s, e, esc, ok := d.str()
			if !ok {
				return events, rejs, false
			}
			kend := d.i
			key := d.b[s:e]
			if esc {
				d.kbuf = unescape(d.kbuf[:0], key)
				key = d.kbuf
			}
			k := knownKey(key)
			d.ws()
			if d.peek() != ':' {
				return events, rejs, d.syntax("want ':' after object key")
			}
			d.i++
			d.ws()
			if k < 0 {
				if d.addKey(&custom, keyRef{s, e, esc}) {
					d.problem(CodeDuplicateKey, "duplicate key "+quoteTrunc(key))
				}
				if len(d.custom) == 0 {
					d.custom = append(d.custom, '{')
				} else {
					d.custom = append(d.custom, ',')
				}
				d.custom = append(d.custom, d.b[kstart:kend]...) // the key as sent
				d.custom = append(d.custom, ':')
				if !d.skip(1, true) {
					return events, rejs, false
				}
			} else {
				if seen&(1<<k) != 0 {
					d.problem(CodeDuplicateKey, "duplicate key "+strconv.Quote(knownNames[k]))
				}
				seen |= 1 << k
				if !d.field(k, ev, &p) {
					return events, rejs, false
				}
			}
			d.ws()
			if c := d.peek(); c == '}' {
				d.i++
				break
			} else if c != ',' {
				return events, rejs, d.syntax("want ',' or '}' in object")
			}
			d.i++
		}
	}
	d.dropKeySet(custom)
	for _, k := range [...]int{kEvent, kEmail, kTimestamp} {
		if seen&(1<<k) == 0 {
			d.problem(CodeMissingField, "missing required field "+strconv.Quote(knownNames[k]))
		}
	}
	if d.prob != "" {
		events = events[:len(events)-1]
		d.arena, d.cats = d.arena[:arenaMark], d.cats[:catsMark]
		return events, append(rejs, d.rejection(idx, start)), true
	}

	if ev.Event == EventBounce && ev.Type == "" {
		ev.Type = TypeBounce
	}
	p.catHi = len(d.cats)
	d.normalizeEmail(ev, &p)
	if len(d.custom) > 0 {
		d.custom = append(d.custom, '}')
		p.f[sCustom] = d.put(d.custom)
	}
	if p.f[kSGEventID].end == p.f[kSGEventID].off {
		off := len(d.arena)
		d.arena = d.appendEventID(d.arena, at, idx)
		p.f[sEventID] = span{off, len(d.arena)}
		ev.EventIDDerived = true
	} else {
		p.f[sEventID] = p.f[kSGEventID]
	}
	d.pend = append(d.pend, p)
	return events, rejs, true
}

func (d *Decoder) rejection(idx, start int) Rejection {
	return Rejection{Index: idx, Code: d.prob, Detail: d.probMsg, Raw: bytes.Clone(d.b[start:d.i])}
}

// put copies v into the arena.
func (d *Decoder) put(v []byte) span {
	off := len(d.arena)
	d.arena = append(d.arena, v...)
	return span{off, len(d.arena)}
}

// stringValue reads a string value for field k, unescaped (in d.vbuf when it
// had escapes). isStr is false, after a wrong_type problem, when the value is
// not a string.
func (d *Decoder) stringValue(k int, want string) (v []byte, isStr, ok bool) {
	if c := d.peek(); c != '"' {
		if c != 0 {
			d.problem(CodeWrongType, fmt.Sprintf("field %q: want %s, got %s", knownNames[k], want, kindName(c)))
		}
		return nil, false, d.skip(1, false)
	}
	s, e, esc, ok := d.str()
	if !ok {
		return nil, false, false
	}
	if !esc {
		return d.b[s:e], true, true
	}
	d.vbuf = unescape(d.vbuf[:0], d.b[s:e])
	return d.vbuf, true, true
}

// numberValue reads a number value for field k.
func (d *Decoder) numberValue(k int, want string) (v []byte, isNum, ok bool) {
	if c := d.peek(); c != '-' && !isDigit(c) {
		if c != 0 {
			d.problem(CodeWrongType, fmt.Sprintf("field %q: want %s, got %s", knownNames[k], want, kindName(c)))
		}
		return nil, false, d.skip(1, false)
	}
	s, e, ok := d.num()
	return d.b[s:e], ok, ok
}

// field decodes the value of known field k at the cursor.
func (d *Decoder) field(k int, ev *Event, p *pending) bool {
	switch k {
	case kEvent:
		v, isStr, ok := d.stringValue(k, "string")
		if isStr {
			if t, known := eventType(v); known {
				ev.Event = t
			} else {
				d.problem(CodeUnknownEvent, fmt.Sprintf("field \"event\": unknown event type %s", quoteTrunc(v)))
			}
		}
		return ok
	case kType:
		v, isStr, ok := d.stringValue(k, "string")
		if isStr {
			switch string(v) {
			case TypeBounce:
				ev.Type = TypeBounce
			case TypeBlocked:
				ev.Type = TypeBlocked
			default:
				d.problem(CodeInvalidType, fmt.Sprintf("field \"type\": want \"bounce\" or \"blocked\", got %s", quoteTrunc(v)))
			}
		}
		return ok
	case kEmail:
		v, isStr, ok := d.stringValue(k, "string")
		if isStr {
			if !addressShape(v) {
				d.problem(CodeInvalidEmail, fmt.Sprintf("field \"email\": %s is not an email address", quoteTrunc(v)))
			}
			p.f[k] = d.put(v)
		}
		return ok
	case kAccountID:
		v, isStr, ok := d.stringValue(k, "string")
		if isStr {
			if !validAccountID(v) {
				d.problem(CodeInvalidAccount, fmt.Sprintf("field \"account_id\": want 1 to 64 of [A-Za-z0-9_.-], got %s", quoteTrunc(v)))
			}
			p.f[k] = d.put(v)
		}
		return ok
	case kCategory:
		return d.category(p)
	case kTimestamp:
		v, isNum, ok := d.numberValue(k, "integer unix seconds")
		if isNum {
			n, integral, fits := jsonInt(v)
			if !integral || !fits || n < 0 || n > 1<<32-1 {
				d.problem(CodeInvalidTimestamp, fmt.Sprintf("field \"timestamp\": want integer unix seconds in 0..4294967295, got %s", truncate(v)))
			} else if d.MaxTimestamp > 0 && n > d.MaxTimestamp {
				d.problem(CodeFutureTimestamp, fmt.Sprintf("field \"timestamp\": %d (%s) is later than %d (%s), the message's time plus the allowed clock skew: fix the producer's clock, then redrive",
					n, time.Unix(n, 0).UTC().Format(time.RFC3339), d.MaxTimestamp, time.Unix(d.MaxTimestamp, 0).UTC().Format(time.RFC3339)))
			}
			ev.Timestamp = n
		}
		return ok
	case kAttempt:
		return d.attempt(ev)
	case kTLS:
		v, isNum, ok := d.numberValue(k, "0 or 1")
		if isNum {
			n, integral, _ := jsonInt(v)
			if !integral || (n != 0 && n != 1) {
				d.problem(CodeInvalidValue, fmt.Sprintf("field \"tls\": want 0 or 1, got %s", truncate(v)))
			}
			ev.TLS = n == 1
		}
		return ok
	case kASMGroupID:
		v, isNum, ok := d.numberValue(k, "integer")
		if isNum {
			n, integral, fits := jsonInt(v)
			if !integral || !fits || n < 0 || n > maxSafeInt {
				d.problem(CodeInvalidValue, fmt.Sprintf("field \"asm_group_id\": want integer in 0..%d, got %s", maxSafeInt, truncate(v)))
			}
			ev.ASMGroupID = n
		}
		return ok
	default: // plain strings
		v, isStr, ok := d.stringValue(k, "string")
		if isStr {
			p.f[k] = d.put(v)
		}
		return ok
	}
}

// maxSafeInt is the largest asm_group_id accepted: 2^53-1, exact in every
// JSON implementation.
const maxSafeInt = 1<<53 - 1

// maxAttempt is the largest attempt accepted; as a string it is at most 9 digits.
const maxAttempt = 999_999_999

func (d *Decoder) attempt(ev *Event) bool {
	const want = "a non-negative integer or a string of 1 to 9 digits"
	switch c := d.peek(); {
	case c == '"':
		v, _, ok := d.stringValue(kAttempt, "")
		if !ok {
			return false
		}
		var n uint32
		good := len(v) >= 1 && len(v) <= 9
		for _, c := range v {
			if !isDigit(c) {
				good = false
				break
			}
			n = n*10 + uint32(c-'0')
		}
		if !good {
			d.problem(CodeInvalidValue, fmt.Sprintf("field \"attempt\": want %s, got %s", want, quoteTrunc(v)))
		}
		ev.Attempt = n
		return true
	case c == '-' || isDigit(c):
		v, _, ok := d.numberValue(kAttempt, "")
		if !ok {
			return false
		}
		n, integral, fits := jsonInt(v)
		if !integral || !fits || n < 0 || n > maxAttempt {
			d.problem(CodeInvalidValue, fmt.Sprintf("field \"attempt\": want %s, got %s", want, truncate(v)))
		}
		ev.Attempt = uint32(n)
		return true
	default:
		if c == 0 {
			return d.syntax("unexpected end of input")
		}
		d.problem(CodeWrongType, fmt.Sprintf("field \"attempt\": want %s, got %s", want, kindName(c)))
		return d.skip(1, false)
	}
}

func (d *Decoder) category(p *pending) bool {
	const want = "string or array of strings"
	switch c := d.peek(); c {
	case '"':
		v, _, ok := d.stringValue(kCategory, want)
		if ok {
			d.cats = append(d.cats, d.put(v))
		}
		return ok
	case '[':
		if !d.enter(2) {
			return false
		}
		d.i++
		d.ws()
		if d.peek() == ']' {
			d.i++
			return true
		}
		for {
			d.ws()
			if c := d.peek(); c != '"' {
				if c == 0 {
					return d.syntax("unexpected end of input")
				}
				d.problem(CodeWrongType, fmt.Sprintf("field \"category\": want %s, got array holding %s", want, kindName(c)))
				if !d.skip(2, false) {
					return false
				}
			} else {
				v, _, ok := d.stringValue(kCategory, want)
				if !ok {
					return false
				}
				d.cats = append(d.cats, d.put(v))
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return true
			default:
				return d.syntax("want ',' or ']' in array")
			}
		}
	case 0:
		return d.syntax("unexpected end of input")
	default:
		d.problem(CodeWrongType, fmt.Sprintf("field \"category\": want %s, got %s", want, kindName(c)))
		return d.skip(1, false)
	}
}

// normalizeEmail fills the EmailNorm and Domain slots and AddressValid.
func (d *Decoder) normalizeEmail(ev *Event, p *pending) {
	raw := p.f[kEmail]
	lo, hi := trimSpace(d.arena[raw.off:raw.end])
	norm := span{raw.off + lo, raw.off + hi}
	if v := d.arena[norm.off:norm.end]; needsLower(v) {
		off := len(d.arena)
		d.arena = appendLower(d.arena, v)
		norm = span{off, len(d.arena)}
	}
	v := d.arena[norm.off:norm.end]
	at := bytes.LastIndexByte(v, '@')
	p.f[sNorm] = norm
	p.f[sDomain] = span{norm.off + at + 1, norm.end}
	ev.AddressValid = validAddress(v)
}

// finish turns the arena into one string and points the pending events'
// string fields into it.
func (d *Decoder) finish(events []Event) {
	if len(d.pend) == 0 {
		return
	}
	all := string(d.arena)
	var cats []string
	if len(d.cats) > 0 {
		cats = make([]string, len(d.cats))
		for i, c := range d.cats {
			cats[i] = all[c.off:c.end]
		}
	}
	for i := range d.pend {
		p := &d.pend[i]
		s := func(k int) string { return all[p.f[k].off:p.f[k].end] }
		ev := &events[p.ev]
		ev.Email = s(kEmail)
		ev.EmailNorm = s(sNorm)
		ev.Domain = s(sDomain)
		ev.SGEventID = s(sEventID)
		ev.SGMessageID = s(kSGMessageID)
		ev.SMTPID = s(kSMTPID)
		ev.Reason = s(kReason)
		ev.Status = s(kStatus)
		ev.Response = s(kResponse)
		ev.BounceClassification = s(kBounceClass)
		ev.IP = s(kIP)
		ev.URL = s(kURL)
		ev.UserAgent = s(kUserAgent)
		ev.FromEmail = s(kFromEmail)
		ev.Subject = s(kSubject)
		ev.Custom = s(sCustom)
		ev.AccountID = s(kAccountID)
		if ev.AccountID == "" {
			ev.AccountID = DefaultAccountID
		}
		if p.catHi > p.catLo {
			ev.Categories = cats[p.catLo:p.catHi:p.catHi]
		}
	}
	d.pend = d.pend[:0]
}

// quoteTrunc quotes v for a Detail, cut to a readable length.
func quoteTrunc(v []byte) string {
	return strconv.Quote(string(truncateBytes(v)))
}

func truncate(v []byte) string { return string(truncateBytes(v)) }

func truncateBytes(v []byte) []byte {
	const max = 64
	if len(v) <= max {
		return v
	}
	return append(bytes.Clone(v[:max]), "..."...)
}
