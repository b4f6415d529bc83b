// Package eventgen makes realistic SendGrid delivery events for the demo,
// the benchmark and the tests: a seeded, deterministic stream with the mix
// of a real sender (mostly processed and delivered, some opens and clicks, a
// few deferrals, bounces, blocks, spam reports and unsubscribes) and real
// bounce texts from the big mailbox providers.
package eventgen

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Generator produces events. It is not safe for concurrent use.
type Generator struct {
	rng *rand.Rand
	n   int64
	// Accounts are the account_ids to spread events over; empty means the
	// default account (no account_id field).
	Accounts []string
	// Recipients is how many distinct recipient addresses to draw from;
	// default 50000.
	Recipients int
	// BaseTime is the unix time of the first event.
	BaseTime int64
	// Step is the time from one event to the next; default 20 ms (50
	// events a second). Timestamps are whole seconds, rounded down.
	Step time.Duration
}

// New returns a generator seeded with seed.
func New(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), Recipients: 50000, BaseTime: 1764201600, Step: 20 * time.Millisecond}
}

type provider struct {
	domains []string
	weight  int
	// bounces: texts with their status and SendGrid type.
	bounces []bounce
}

type bounce struct {
	status, typ, reason string
}

// Texts as these providers send them (see enrich/testdata/corpus.tsv for
// their sources).
var providers = []provider{
	{[]string{"gmail.com", "googlemail.com"}, 40, []bounce{
		{"5.1.1", "bounce", "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp"},
		{"5.2.2", "bounce", "552 5.2.2 The email account that you tried to reach is over quota. - gsmtp"},
		{"5.7.26", "blocked", "550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users, and has been blocked. - gsmtp"},
		{"4.2.1", "bounce", "450 4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your message at a later time. - gsmtp"},
		{"5.7.1", "blocked", "550 5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked. - gsmtp"},
	}},
	{[]string{"outlook.com", "hotmail.com", "live.com"}, 25, []bounce{
		{"5.5.0", "bounce", "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)."},
		{"5.7.1", "blocked", "550 5.7.1 Unfortunately, messages from [192.0.2.10] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150)."},
		{"5.1.1", "bounce", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"},
	}},
	{[]string{"yahoo.com", "aol.com", "ymail.com"}, 15, []bounce{
		{"", "bounce", "554 delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com"},
		{"", "bounce", "554 30 Sorry, your message to someone@yahoo.com cannot be delivered. This mailbox is disabled (554.30)."},
		{"4.7.0", "blocked", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"},
	}},
	{[]string{"icloud.com", "me.com"}, 8, []bounce{
		{"5.1.1", "bounce", "550 5.1.1 <someone@icloud.com>: inactive email address"},
		{"5.2.2", "bounce", "552 5.2.2 <someone@icloud.com>: user is over quota"},
	}},
	{[]string{"example-corp.com", "acme-industries.example", "nxdomain-typo.example"}, 12, []bounce{
		{"5.1.1", "bounce", "host mx.example-corp.com[192.0.2.25] said: 550 5.1.1 <someone@example-corp.com>: Recipient address rejected: User unknown in local recipient table (in reply to RCPT TO command)"},
		{"", "bounce", "Host or domain name not found. Name service error for name=nxdomain-typo.example type=A: Host not found"},
		{"5.7.1", "blocked", "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org"},
		{"4.7.1", "bounce", "451 4.7.1 <someone@example-corp.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example-corp.com.html"},
	}},
}

var categories = []string{"newsletter", "receipt", "password-reset", "welcome", "digest", "promo"}

// weights of event types, out of 1000.
var eventWeights = []struct {
	event  string
	weight int
}{
	{"processed", 330}, {"delivered", 310}, {"open", 170}, {"click", 60}, {"deferred", 40},
	{"bounce", 60}, {"spamreport", 5}, {"unsubscribe", 10}, {"group_unsubscribe", 5},
	{"group_resubscribe", 2}, {"dropped", 8},
}

func (g *Generator) pickProvider() *provider {
	total := 0
	for _, p := range providers {
		total += p.weight
	}
	n := g.rng.IntN(total)
	for i := range providers {
		if n < providers[i].weight {
			return &providers[i]
		}
		n -= providers[i].weight
	}
	return &providers[0]
}

func (g *Generator) pickEvent() string {
	n := g.rng.IntN(1000)
	for _, w := range eventWeights {
		if n < w.weight {
			return w.event
		}
		n -= w.weight
	}
	return "delivered"
}

// Next appends the JSON of one event to dst and returns it with the event's
// type (in SendGrid's terms; a block is "bounce" with type blocked).
func (g *Generator) Next(dst []byte) ([]byte, string) {
	g.n++
	p := g.pickProvider()
	domain := p.domains[g.rng.IntN(len(p.domains))]
	user := g.rng.IntN(max(g.Recipients, 1))
	ev := g.pickEvent()
	step := g.Step
	if step <= 0 {
		step = 20 * time.Millisecond
	}
	ts := g.BaseTime + int64(time.Duration(g.n)*step/time.Second)
	dst = append(dst, `{"email":"user`...)
	dst = strconv.AppendInt(dst, int64(user), 10)
	dst = append(dst, '@')
	dst = append(dst, domain...)
	dst = append(dst, `","timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"event":"`...)
	dst = append(dst, ev...)
	dst = append(dst, `","sg_event_id":"gen-`...)
	dst = strconv.AppendInt(dst, g.n, 36)
	dst = append(dst, `-`...)
	dst = strconv.AppendUint(dst, g.rng.Uint64()&0xffffffff, 36)
	dst = append(dst, `","sg_message_id":"msg`...)
	dst = strconv.AppendInt(dst, g.n/3, 36)
	dst = append(dst, `.filter0001p1las1-1234-5E8B-0.0","smtp-id":"<msg`...)
	dst = strconv.AppendInt(dst, g.n/3, 36)
	dst = append(dst, `@bouncer.example>","category":"`...)
	dst = append(dst, categories[g.rng.IntN(len(categories))]...)
	dst = append(dst, '"')
	if len(g.Accounts) > 0 {
		dst = append(dst, `,"account_id":"`...)
		dst = append(dst, g.Accounts[g.rng.IntN(len(g.Accounts))]...)
		dst = append(dst, '"')
	}
	switch ev {
	case "bounce":
		b := p.bounces[g.rng.IntN(len(p.bounces))]
		dst = fmt.Appendf(dst, `,"type":%q,"reason":%q`, b.typ, b.reason)
		if b.status != "" {
			dst = fmt.Appendf(dst, `,"status":%q`, b.status)
		}
		dst = append(dst, `,"ip":"192.0.2.10","tls":1`...)
	case "deferred":
		b := p.bounces[g.rng.IntN(len(p.bounces))]
		dst = fmt.Appendf(dst, `,"response":%q,"attempt":"%d","ip":"192.0.2.10","tls":1`, b.reason, 1+g.rng.IntN(5))
	case "delivered":
		dst = append(dst, `,"response":"250 2.0.0 OK  1764201600 a640c23a62f3a-ab67626ed70si1234567a.1 - gsmtp","ip":"192.0.2.10","tls":1`...)
	case "open":
		dst = append(dst, `,"useragent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","ip":"203.0.113.7"`...)
	case "click":
		dst = append(dst, `,"url":"https://www.example.com/offers?id=42","useragent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)","ip":"203.0.113.7"`...)
	case "group_unsubscribe", "group_resubscribe":
		dst = append(dst, `,"asm_group_id":`...)
		dst = strconv.AppendInt(dst, int64(1+g.rng.IntN(3)), 10)
	case "dropped":
		dst = append(dst, `,"reason":"Bounced Address","status":"5.0.0"`...)
	case "processed":
		dst = append(dst, `,"from_email":"news@bouncer.example","subject":"Your weekly digest","customer_tier":"gold"`...)
	}
	dst = append(dst, '}')
	return dst, ev
}

// RecipientKey is the Kafka key of a generated message: its (first)
// event's recipient, so one recipient's events stay in one partition, in
// order (nil when there is none).
func RecipientKey(v []byte) []byte {
	i := bytes.Index(v, []byte(`"email":"`))
	if i < 0 {
		return nil
	}
	rest := v[i+len(`"email":"`):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		return rest[:j:j]
	}
	return nil
}

// Message appends one Kafka message of n events to dst: the event's JSON
// object when n is 1, else SendGrid's array form.
func (g *Generator) Message(dst []byte, n int) []byte {
	if n == 1 {
		dst, _ = g.Next(dst)
		return dst
	}
	dst = append(dst, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst, _ = g.Next(dst)
	}
	return append(dst, ']')
}

// badPayloads are malformed messages, one of each kind the pipeline
// dead-letters.
var badPayloads = [][]byte{
	[]byte(`{"event":"bounce","email":"x@example.com","timestamp":`),
	[]byte(`{"event":"teleported","email":"x@example.com","timestamp":1764201600}`),
	[]byte(`{"event":"delivered","email":"not an address","timestamp":1764201600}`),
	[]byte(`{"event":"delivered","timestamp":1764201600}`),
	[]byte("{\"event\":\"delivered\",\"email\":\"x@example.com\",\"timestamp\":1764201600,\"subject\":\"\xff\xfe\"}"),
	[]byte(`{"event":"delivered","email":"x@example.com","email":"y@example.com","timestamp":1764201600}`),
	[]byte(`{"event":"delivered","email":"x@example.com","timestamp":"yesterday"}`),
	[]byte(``),
}

// Bad returns the i-th malformed message (they repeat): truncated JSON, an
// unknown event, a bad address, a missing field, non-UTF-8, a duplicate
// key, a wrong type, an empty message.
func Bad(i int) []byte { return badPayloads[i%len(badPayloads)] }
