package forward

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/wneessen/go-mail"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/schemas"
)

// Marks of forwarded messages, for loop detection.
const (
	// MessageIDPrefix starts the local part of every forwarded message's
	// Message-ID: <bouncer-fwd.RANDOM@DOMAIN>.
	MessageIDPrefix = "bouncer-fwd."
	// HeaderForwarded is set on every forwarded message (value: "report"
	// or "digest").
	HeaderForwarded = "X-Bouncer-Forwarded"
	// CustomArg is the SendGrid unique argument set through X-SMTPAPI; a
	// SendGrid relay copies it into the events of the message.
	CustomArg = "bouncer_forwarded"
)

// maxFieldBytes bounds one field of a report (a hostile 1 MB reason must
// not make a 1 MB email).
const maxFieldBytes = 2000

// bounce is what a report says about one bounce. Its strings are copies:
// a decoded event's strings share the Kafka message's memory, which a
// pending digest must not keep alive.
type bounce struct {
	Account        string
	Recipient      string
	Reason         string
	Status         string
	Classification string
	BounceType     string
	ReasonCode     string
	Type           string
	Time           time.Time
	SGMessageID    string
	SMTPID         string
	SGEventID      string
}

func newBounce(ev *schemas.Event, res *enrich.Result) bounce {
	b := bounce{
		Account:     strings.Clone(ev.AccountID),
		Recipient:   strings.Clone(ev.Email),
		Reason:      clip(ev.Reason),
		Status:      clip(ev.Status),
		Type:        strings.Clone(ev.Type),
		Time:        time.Unix(ev.Timestamp, 0).UTC(),
		SGMessageID: clip(ev.SGMessageID),
		SMTPID:      clip(ev.SMTPID),
		SGEventID:   clip(ev.SGEventID),
	}
	if res != nil {
		b.Classification = string(res.Classification)
		b.BounceType = string(res.BounceType)
		b.ReasonCode = string(res.Reason)
		if b.Status == "" && !res.Status.IsZero() {
			b.Status = res.Status.String()
		}
	}
	return b
}

// forwardedMark reports whether an event is about a message the forwarder
// sent: its ids or custom arguments carry one of the marks.
func forwardedMark(ev *schemas.Event) bool {
	has := func(s string) bool {
		return s != "" && (containsFold(s, MessageIDPrefix) || containsFold(s, CustomArg))
	}
	return has(ev.SMTPID) || has(ev.SGMessageID) || has(ev.Custom)
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// clip copies s, cut to maxFieldBytes on a rune boundary, with control
// characters other than tab and newline replaced by spaces. (A report
// writes each field on one line: see flat.)
func clip(s string) string {
	if len(s) > maxFieldBytes {
		cut := maxFieldBytes
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' {
			return r
		}
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// flat puts s on one line: every run of white space, line breaks (CR, LF,
// VT, FF, NEL, U+2028, U+2029) included, becomes one space. Status and
// reason come from remote mail servers; with their line breaks kept they
// could add lines (a fake "Classification:") to a report.
func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

// oneLine makes s fit a header: no line breaks, at most 200 bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// newMessageID returns a Message-ID (without brackets) carrying the mark.
func newMessageID(domain string) string {
	var r [12]byte
	rand.Read(r[:])
	return MessageIDPrefix + hex.EncodeToString(r[:]) + "@" + domain
}

// newMsg starts a forwarded message with the marks every one carries.
func (f *Forwarder) newMsg(to, kind, subject string, now time.Time) (*mail.Msg, error) {
	m := mail.NewMsg()
	m.FromMailAddress(f.cfg.from)
	if err := m.To(to); err != nil {
		return nil, fmt.Errorf("forwarding address %q: %w", to, err)
	}
	m.Subject(subject)
	m.SetMessageIDWithValue(newMessageID(f.cfg.fromDomain))
	m.SetDateWithValue(now)
	m.SetGenHeader(mail.Header(HeaderForwarded), kind)
	m.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	m.SetGenHeader(mail.Header("X-Auto-Response-Suppress"), "All")
	m.SetGenHeader(mail.Header("X-SMTPAPI"), `{"unique_args":{"`+CustomArg+`":"1"}}`)
	return m, nil
}

// reportMsg is the email about one bounce.
func (f *Forwarder) reportMsg(to string, b bounce, now time.Time) (*mail.Msg, error) {
	subject := "Bounce: " + oneLine(b.Recipient)
	if b.Classification != "" {
		subject += " (" + b.Classification + ")"
	}
	m, err := f.newMsg(to, "report", subject, now)
	if err != nil {
		return nil, err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "A message of account %s to %s bounced.\n\n", b.Account, flat(b.Recipient))
	writeBounce(&s, b)
	s.WriteString("\n" + footer)
	m.SetBodyString(mail.TypeTextPlain, s.String())
	return m, nil
}

// digestMsg is the email listing the bounces over an account's rate cap in
// one window; more is how many were not listed.
func (f *Forwarder) digestMsg(to, account string, from, until time.Time, list []bounce, more int, now time.Time) (*mail.Msg, error) {
	total := len(list) + more
	subject := fmt.Sprintf("Bounce digest: %d bounces of account %s", total, oneLine(account))
	m, err := f.newMsg(to, "digest", subject, now)
	if err != nil {
		return nil, err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "Account %s had %d more bounces from %s to %s than the %d reports per %s it is sent one by one.\n",
		account, total, from.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339), f.cfg.RateLimit, f.cfg.RateWindow)
	for i, b := range list {
		fmt.Fprintf(&s, "\n%d.\n", i+1)
		writeBounce(&s, b)
	}
	if more > 0 {
		fmt.Fprintf(&s, "\n... and %d more bounces not listed (a digest lists at most %d).\n", more, f.cfg.DigestMax)
	}
	s.WriteString("\n" + footer)
	m.SetBodyString(mail.TypeTextPlain, s.String())
	return m, nil
}

const footer = "-- \nSent by bouncer because bounce forwarding is enabled for this account\n" +
	"(GET or PATCH /v3/mail_settings/forward_bounce to see or change it).\n"

func writeBounce(s *strings.Builder, b bounce) {
	line := func(k, v string) {
		v = flat(v)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(s, "%-15s %s\n", k+":", v)
	}
	line("Recipient", b.Recipient)
	line("Reason", b.Reason)
	line("Status", b.Status)
	class := b.Classification
	if b.BounceType != "" {
		class += " (" + b.BounceType
		if b.ReasonCode != "" {
			class += ", " + b.ReasonCode
		}
		class += ")"
	}
	line("Classification", class)
	if b.Type == schemas.TypeBlocked {
		line("Type", "blocked")
	}
	line("Event time", b.Time.Format(time.RFC3339))
	line("Message ID", b.SGMessageID)
	line("SMTP ID", b.SMTPID)
	line("Event ID", b.SGEventID)
}
