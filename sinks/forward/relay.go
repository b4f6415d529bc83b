package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
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

// isPermanent tells an SMTP 5xx reply (the relay refused for good) from
// everything else (4xx replies, connection errors, timeouts), which is
// worth retrying.
func isPermanent(err error) bool {
	var p permanent
	if errors.As(err, &p) {
		return true
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		if code := se.ErrorCode(); code != 0 {
			return code >= 500
		}
		return false
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code >= 500
	}
	return false
}
