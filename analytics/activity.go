package analytics

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/schemas"
)

// Email activity (SendGrid's GET /v3/messages and /v3/messages/{msg_id}).
//
// The query language is a subset of SendGrid's:
//
//	cond  := field "=" string
//	       | "last_event_time" BETWEEN TIMESTAMP string AND TIMESTAMP string
//	field := to_email | from_email | msg_id | status
//	term  := cond | "(" expr ")"
//	and   := term { AND term }
//	expr  := and { OR and }
//
// Keywords are case-insensitive; strings are double-quoted with \" and \\
// as the only escapes; timestamps are RFC 3339 and the range is inclusive.
// AND binds tighter than OR. Values only ever become bound arguments.

// Activity filter operators.
const (
	FilterAnd     = "and"
	FilterOr      = "or"
	FilterEq      = "eq"      // Field = Value
	FilterBetween = "between" // last_event_time in [From, To]
)

// Activity message statuses (SendGrid's): not_delivered when the message
// has a bounce (or block) or was dropped; else delivered when it has a
// delivered, open or click event; else processed.
const (
	StatusProcessed    = "processed"
	StatusDelivered    = "delivered"
	StatusNotDelivered = "not_delivered"
)

// ActivityFilter is a parsed activity query: an AND or OR of Args, or a
// condition on one field.
type ActivityFilter struct {
	Op       string
	Args     []*ActivityFilter
	Field    string // FilterEq: to_email, from_email, msg_id or status
	Value    string // FilterEq: to_email and from_email lower-cased
	From, To time.Time
}

// ActivityMessage is one message (sg_message_id) of the activity list.
type ActivityMessage struct {
	MsgID, FromEmail, Subject, ToEmail, Status string
	Opens, Clicks                              uint64 // distinct open and click events
	LastEventTime                              time.Time
}

// ActivityEvent is one event of a message (each sg_event_id once).
type ActivityEvent struct {
	Event, Type, Reason, URL, BounceType, UserAgent string
	Email, FromEmail, Subject                       string
	Time                                            time.Time
	Attempt                                         uint32
	AsmGroupID                                      int64
}

// Bounds of an activity query.
const (
	MaxActivityQuery = 4096 // bytes of the query
	maxActivityDepth = 16   // parentheses nesting
	maxActivityConds = 64   // conditions per query
)

// QueryError is a malformed activity query; Msg says what to fix.
type QueryError struct{ Msg string }

func (e *QueryError) Error() string { return e.Msg }

var activityFields = map[string]bool{"to_email": true, "from_email": true, "msg_id": true, "status": true}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokEq
	tokLParen
	tokRParen
)

type token struct {
	kind tokKind
	text string // word (as written) or unescaped string
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of query"
	case tokString:
		return "a string"
	}
	return fmt.Sprintf("%q", t.text)
}

// lexActivity splits a query into tokens.
func lexActivity(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '=':
			out = append(out, token{tokEq, "=", i})
			i++
		case c == '(':
			out = append(out, token{tokLParen, "(", i})
			i++
		case c == ')':
			out = append(out, token{tokRParen, ")", i})
			i++
		case c == '"':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated string at offset %d", start)
				}
				if s[i] == '\\' {
					if i+1 >= len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
						return nil, fmt.Errorf("invalid escape at offset %d: only \\\" and \\\\", i)
					}
					b.WriteByte(s[i+1])
					i += 2
					continue
				}
				if s[i] == '"' {
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			out = append(out, token{tokString, b.String(), start})
		case c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
			start := i
			for i < len(s) && (s[i] == '_' || (s[i]|0x20 >= 'a' && s[i]|0x20 <= 'z') || (s[i] >= '0' && s[i] <= '9')) {
				i++
			}
			out = append(out, token{tokWord, s[start:i], start})
		default:
			return nil, fmt.Errorf("unexpected character %q at offset %d", rune(c), i)
		}
	}
	return append(out, token{tokEOF, "", len(s)}), nil
}

type activityParser struct {
	toks  []token
	i     int
	conds int
}

func (p *activityParser) peek() token { return p.toks[p.i] }
func (p *activityParser) next() token { t := p.toks[p.i]; p.i = min(p.i+1, len(p.toks)-1); return t }

func (p *activityParser) keyword(kw string) bool {
	if t := p.peek(); t.kind == tokWord && strings.EqualFold(t.text, kw) {
		p.next()
		return true
	}
	return false
}

func (p *activityParser) expect(kw string) error {
	if !p.keyword(kw) {
		t := p.peek()
		return fmt.Errorf("expected %s at offset %d, found %s", kw, t.pos, t)
	}
	return nil
}

func (p *activityParser) str() (string, error) {
	t := p.next()
	if t.kind != tokString {
		return "", fmt.Errorf("expected a double-quoted string at offset %d, found %s", t.pos, t)
	}
	return t.text, nil
}

func (p *activityParser) expr(depth int) (*ActivityFilter, error) {
	return p.list(depth, "OR", FilterOr, func() (*ActivityFilter, error) {
		return p.list(depth, "AND", FilterAnd, func() (*ActivityFilter, error) { return p.term(depth) })
	})
}

// list parses sub { kw sub }, flattened into one node of op.
func (p *activityParser) list(depth int, kw, op string, sub func() (*ActivityFilter, error)) (*ActivityFilter, error) {
	first, err := sub()
	if err != nil {
		return nil, err
	}
	args := []*ActivityFilter{first}
	for p.keyword(kw) {
		f, err := sub()
		if err != nil {
			return nil, err
		}
		args = append(args, f)
	}
	if len(args) == 1 {
		return first, nil
	}
	return &ActivityFilter{Op: op, Args: args}, nil
}

func (p *activityParser) term(depth int) (*ActivityFilter, error) {
	t := p.next()
	switch t.kind {
	case tokLParen:
		if depth >= maxActivityDepth {
			return nil, fmt.Errorf("parentheses nested deeper than %d", maxActivityDepth)
		}
		f, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokRParen {
			return nil, fmt.Errorf("expected ) at offset %d, found %s", c.pos, c)
		}
		return f, nil
	case tokWord:
	default:
		return nil, fmt.Errorf("expected a field at offset %d, found %s", t.pos, t)
	}
	if p.conds++; p.conds > maxActivityConds {
		return nil, fmt.Errorf("more than %d conditions", maxActivityConds)
	}
	field := strings.ToLower(t.text)
	if field == "last_event_time" {
		if err := p.expect("BETWEEN"); err != nil {
			return nil, err
		}
		var ts [2]time.Time
		for i := range ts {
			if i == 1 {
				if err := p.expect("AND"); err != nil {
					return nil, err
				}
			}
			if err := p.expect("TIMESTAMP"); err != nil {
				return nil, err
			}
			s, err := p.str()
			if err != nil {
				return nil, err
			}
			if ts[i], err = time.Parse(time.RFC3339, s); err != nil {
				return nil, fmt.Errorf("TIMESTAMP %q: want RFC 3339, e.g. 2026-11-01T00:00:00Z", s)
			}
			ts[i] = ts[i].UTC()
		}
		if ts[1].Before(ts[0]) {
			return nil, fmt.Errorf("BETWEEN: the second TIMESTAMP is before the first")
		}
		return &ActivityFilter{Op: FilterBetween, Field: field, From: ts[0], To: ts[1]}, nil
	}
	if !activityFields[field] {
		return nil, fmt.Errorf("'%s' is not a known field", t.text)
	}
	if e := p.next(); e.kind != tokEq {
		return nil, fmt.Errorf("expected = after %s at offset %d, found %s", field, e.pos, e)
	}
	v, err := p.str()
	if err != nil {
		return nil, err
	}
	switch field {
	case "to_email", "from_email":
		v = schemas.LowerASCII(strings.TrimSpace(v)) // ASCII only, as email_norm and ClickHouse's lower()
	case "status":
		if v != StatusProcessed && v != StatusDelivered && v != StatusNotDelivered {
			return nil, fmt.Errorf("status %q: want processed, delivered or not_delivered", v)
		}
	}
	return &ActivityFilter{Op: FilterEq, Field: field, Value: v}, nil
}

// ParseActivityQuery parses SendGrid's query language subset (see the
// grammar above); a malformed query is a *QueryError saying what is wrong.
func ParseActivityQuery(s string) (*ActivityFilter, error) {
	fail := func(err error) (*ActivityFilter, error) {
		return nil, &QueryError{"invalid syntax: " + err.Error()}
	}
	if strings.TrimSpace(s) == "" {
		return nil, &QueryError{"query is required, e.g. to_email=\"a@example.com\""}
	}
	if len(s) > MaxActivityQuery || !utf8.ValidString(s) {
		return nil, &QueryError{fmt.Sprintf("query must be UTF-8 of at most %d bytes", MaxActivityQuery)}
	}
	toks, err := lexActivity(s)
	if err != nil {
		return fail(err)
	}
	p := &activityParser{toks: toks}
	f, err := p.expr(0)
	if err != nil {
		return fail(err)
	}
	if t := p.peek(); t.kind != tokEOF {
		return fail(fmt.Errorf("unexpected %s at offset %d", t, t.pos))
	}
	return f, nil
}

// ActivityEventJSON is SendGrid's message Event.
type ActivityEventJSON struct {
	EventName     string `json:"event_name"`
	Processed     string `json:"processed"`
	Reason        string `json:"reason,omitempty"`
	AttemptNum    uint32 `json:"attempt_num,omitempty"`
	URL           string `json:"url,omitempty"`
	BounceType    string `json:"bounce_type,omitempty"`
	HTTPUserAgent string `json:"http_user_agent,omitempty"`
}

// ActivityMessageJSON is SendGrid's Message.
type ActivityMessageJSON struct {
	FromEmail  string              `json:"from_email"`
	MsgID      string              `json:"msg_id"`
	Subject    string              `json:"subject"`
	ToEmail    string              `json:"to_email"`
	Status     string              `json:"status"`
	AsmGroupID int64               `json:"asm_group_id,omitempty"`
	Events     []ActivityEventJSON `json:"events"`
}

// activityEventNames maps bouncer's (webhook) event names to the activity
// feed's.
var activityEventNames = map[string]string{
	"bounce": "bounced", "open": "opened", "click": "clicked", "spamreport": "spam_report",
}

// MessageStatus is the status of a message with these events (the rule of
// the Status constants).
func MessageStatus(events []string) string {
	st := StatusProcessed
	for _, e := range events {
		switch e {
		case "bounce", "dropped":
			return StatusNotDelivered
		case "delivered", "open", "click":
			st = StatusDelivered
		}
	}
	return st
}

func ActivityTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// BuildActivityMessage is SendGrid's Message from a message's events.
func BuildActivityMessage(msgID string, evs []ActivityEvent) ActivityMessageJSON {
	m := ActivityMessageJSON{MsgID: msgID, Events: make([]ActivityEventJSON, 0, len(evs))}
	names := make([]string, 0, len(evs))
	for _, e := range evs {
		names = append(names, e.Event)
		m.FromEmail = firstNonEmpty(m.FromEmail, e.FromEmail)
		m.Subject = firstNonEmpty(m.Subject, e.Subject)
		m.ToEmail = firstNonEmpty(m.ToEmail, e.Email)
		if m.AsmGroupID == 0 && e.AsmGroupID > 0 {
			m.AsmGroupID = e.AsmGroupID
		}
		name := e.Event
		if n, ok := activityEventNames[name]; ok {
			name = n
		}
		ee := ActivityEventJSON{EventName: name, Processed: ActivityTime(e.Time), Reason: e.Reason, URL: e.URL, HTTPUserAgent: e.UserAgent}
		if e.Event == "deferred" {
			ee.AttemptNum = e.Attempt
		}
		if e.Event == "bounce" {
			ee.BounceType = e.BounceType
		}
		m.Events = append(m.Events, ee)
	}
	m.Status = MessageStatus(names)
	return m
}

// firstNonEmpty keeps the first non-empty value.
func firstNonEmpty(have, v string) string {
	if have != "" {
		return have
	}
	return v
}
