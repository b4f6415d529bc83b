package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"

	"github.com/wneessen/go-mail"
)

// send hands m to the relay in one attempt (a new connection), bounded by
// Relay.Timeout.
func (f *Forwarder) send(ctx context.Context, m *mail.Msg) error {
	r := f.cfg.Relay
	host, portStr, _ := net.SplitHostPort(r.Addr)
	port, _ := strconv.Atoi(portStr)
	opts := []mail.Option{
		mail.WithPort(port),
		mail.WithTimeout(r.Timeout),
		mail.WithTLSConfig(&tls.Config{ServerName: host, RootCAs: r.RootCAs, MinVersion: tls.VersionTLS12}),
	}
	switch r.TLS {
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	}
	if r.HELO != "" {
		opts = append(opts, mail.WithHELO(r.HELO))
	}
	if auth := authType(r.Auth); auth != "" {
		opts = append(opts, mail.WithSMTPAuth(auth), mail.WithUsername(r.Username), mail.WithPassword(r.Password))
	}
	c, err := mail.NewClient(host, opts...)
	if err != nil {
		return permanent{err}
	}
	actx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	return c.DialAndSendWithContext(actx, m)
}

func authType(a string) mail.SMTPAuthType {
	switch a {
	case AuthPlain:
		return mail.SMTPAuthPlain
	case AuthLogin:
		return mail.SMTPAuthLogin
	case AuthCramMD5:
		return mail.SMTPAuthCramMD5
	}
	return ""
}

// permanent wraps an error that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// isPermanent tells a 5xx reply to the message itself (MAIL FROM, RCPT TO,
// DATA: the relay refused this message for good) from everything else,
// which is worth retrying: 4xx replies, connection errors, timeouts, and
// failures to set up the session (TLS, AUTH), which are the relay's or the
// configuration's, not the message's, and would drop every report.
func isPermanent(err error) bool {
	var p permanent
	if errors.As(err, &p) {
		return true
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		switch se.Reason {
		case mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo, mail.ErrSMTPData, mail.ErrSMTPDataClose:
			return se.ErrorCode() >= 500
		case mail.ErrGetSender, mail.ErrGetRcpts, mail.ErrNoUnencoded:
			return true // the message itself is unusable
		}
	}
	return false
}
