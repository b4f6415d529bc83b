package forward

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/enrich"
)

// Settings lists the accounts that have bounce forwarding enabled, each
// with its address (sinks/clickhouse's Store implements it). The forwarder
// calls it every Config.RefreshEvery; a setting that is not enabled or has
// no address is passed over.
type Settings interface {
	EnabledForwardBounces(ctx context.Context) ([]accounts.ForwardBounce, error)
}

// TLS modes of the relay connection.
const (
	TLSNone     = "none"     // plain text, no TLS at all
	TLSStartTLS = "starttls" // STARTTLS required after EHLO (port 587)
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
)

// Auth mechanisms of the relay (go-mail's names, lower case).
const (
	AuthNone    = "none"
	AuthPlain   = "plain"
	AuthLogin   = "login"
	AuthCramMD5 = "cram-md5"
)

// Relay says how to reach the SMTP relay.
type Relay struct {
	// Addr is the relay's host:port. Required.
	Addr string
	// Username and Password authenticate with Auth.
	Username, Password string
	// Auth is none, plain, login or cram-md5; default plain when Username
	// is set, else none. plain and login need TLS (TLS starttls or tls).
	Auth string
	// TLS is starttls (default), tls or none.
	TLS string
	// RootCAs verifies the relay's certificate; nil: the system's roots.
	RootCAs *x509.CertPool
	// Timeout bounds one delivery attempt (connect, TLS, AUTH and the SMTP
	// transaction); default 30s.
	Timeout time.Duration
	// HELO is the name sent in EHLO; default the host name.
	HELO string
}

// Validate fills defaults and reports the first bad field.
func (r *Relay) Validate() error {
	host, port, err := net.SplitHostPort(r.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("forward: relay address %q: want host:port, for example smtp.example.com:587", r.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("forward: relay port %q: want 1 to 65535", port)
	}
	r.TLS = strings.ToLower(strings.TrimSpace(r.TLS))
	switch r.TLS {
	case "":
		r.TLS = TLSStartTLS
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("forward: relay TLS mode %q: want none, starttls or tls", r.TLS)
	}
	r.Auth = strings.ToLower(strings.TrimSpace(r.Auth))
	if r.Auth == "" {
		r.Auth = AuthNone
		if r.Username != "" {
			r.Auth = AuthPlain
		}
	}
	switch r.Auth {
	case AuthNone:
	case AuthPlain, AuthLogin, AuthCramMD5:
		if r.Username == "" {
			return fmt.Errorf("forward: relay auth %s needs a user name", r.Auth)
		}
		if r.Auth != AuthCramMD5 && r.TLS == TLSNone {
			return fmt.Errorf("forward: relay auth %s would send the password in clear text: use TLS starttls or tls (or auth cram-md5)", r.Auth)
		}
	default:
		return fmt.Errorf("forward: relay auth %q: want none, plain, login or cram-md5", r.Auth)
	}
	if r.Timeout < 0 {
		return fmt.Errorf("forward: relay timeout %s: want a positive duration", r.Timeout)
	}
	if r.Timeout == 0 {
		r.Timeout = 30 * time.Second
	}
	return nil
}

// Config of a Forwarder. Zero values take the defaults in the comments.
type Config struct {
	Relay Relay
	// From is the sender of every report, "bounces@example.com" or
	// "Bouncer <bounces@example.com>". Required.
	From string
	// Settings lists the enabled accounts. Required.
	Settings Settings
	// Classifier classifies bounces as the sink does. Required.
	Classifier *enrich.Classifier
	// ForwardBlocks forwards blocks (bounces of type blocked) too; default
	// false.
	ForwardBlocks bool
	// MaxAge skips bounces whose event time is older than this (a new group
	// reads the topic from its start; a long outage is not replayed as a
	// flood); default 6h.
	MaxAge time.Duration
	// RefreshEvery is how often Settings is read; default 10s.
	RefreshEvery time.Duration
	// RateLimit is how many reports one account gets per RateWindow before
	// further bounces go to that window's digest; default 10. RateWindow
	// defaults to 1m.
	RateLimit  int
	RateWindow time.Duration
	// DigestMax is the most bounces one digest lists (the rest are
	// counted); default 500. MaxPendingBounces bounds the bounces listed in
	// all pending digests together; default 50000.
	DigestMax         int
	MaxPendingBounces int
	// RetryInitial (default 1s) and RetryMax (default 1m) bound the pause
	// between attempts of a failed send; GiveUpAfter (default 15m) is how
	// long a transient failure is retried before the report is dropped.
	RetryInitial time.Duration
	RetryMax     time.Duration
	GiveUpAfter  time.Duration
	// FlushTimeout bounds the final sending of pending digests when Run
	// stops; default 20s.
	FlushTimeout time.Duration
	// MaxMessageBytes bounds one Kafka message as the sink's does; default
	// 1 MiB. Larger messages are skipped (the sink dead-letters them).
	MaxMessageBytes int
	Logger          *slog.Logger
	Metrics         *Metrics
	// Clock reads the time (rate windows, event ages, the give-up bound)
	// and times the digest and settings ticks and the pauses between
	// attempts; default the real clock.
	Clock clockwork.Clock

	from       *mail.Address
	fromDomain string
}

// Validate fills defaults and reports the first bad field.
func (c *Config) Validate() error {
	if err := c.Relay.Validate(); err != nil {
		return err
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil || strings.ContainsAny(from.Address, " \t\r\n") {
		return fmt.Errorf("forward: from address %q: want an address such as bounces@example.com", c.From)
	}
	at := strings.LastIndexByte(from.Address, '@')
	if at <= 0 || at == len(from.Address)-1 {
		return fmt.Errorf("forward: from address %q: want local@domain", c.From)
	}
	c.from, c.fromDomain = from, strings.ToLower(from.Address[at+1:])
	switch {
	case c.Settings == nil:
		return errors.New("forward: Config.Settings is required")
	case c.Classifier == nil:
		return errors.New("forward: Config.Classifier is required")
	case c.RateLimit < 0:
		return fmt.Errorf("forward: rate limit %d: want at least 1 report per window", c.RateLimit)
	case c.RateWindow < 0, c.MaxAge < 0, c.RefreshEvery < 0, c.RetryInitial < 0, c.RetryMax < 0, c.GiveUpAfter < 0, c.FlushTimeout < 0:
		return errors.New("forward: durations must be positive")
	case c.DigestMax < 0, c.MaxPendingBounces < 0, c.MaxMessageBytes < 0:
		return errors.New("forward: sizes must be positive")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.RateLimit, 10)
	def(&c.DigestMax, 500)
	def(&c.MaxPendingBounces, 50000)
	def(&c.MaxMessageBytes, 1<<20)
	defd(&c.RateWindow, time.Minute)
	defd(&c.MaxAge, 6*time.Hour)
	defd(&c.RefreshEvery, 10*time.Second)
	defd(&c.RetryInitial, time.Second)
	defd(&c.RetryMax, time.Minute)
	defd(&c.GiveUpAfter, 15*time.Minute)
	defd(&c.FlushTimeout, 20*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	return nil
}

// ParseRate parses a rate cap "N" (per minute) or "N/WINDOW" with WINDOW a
// duration ("10/1m", "100/1h", "5/30s") or m, h ("10/m").
func ParseRate(s string) (int, time.Duration, error) {
	n, w, hasWindow := strings.Cut(strings.TrimSpace(s), "/")
	limit, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || limit < 1 {
		return 0, 0, fmt.Errorf("rate %q: want N or N/WINDOW with N at least 1, for example 10/1m", s)
	}
	if !hasWindow {
		return limit, time.Minute, nil
	}
	w = strings.TrimSpace(w)
	switch w {
	case "s", "m", "h":
		w = "1" + w
	}
	window, err := time.ParseDuration(w)
	if err != nil || window < time.Second {
		return 0, 0, fmt.Errorf("rate %q: window %q: want a duration of at least 1s, for example 1m", s, w)
	}
	return limit, window, nil
}
