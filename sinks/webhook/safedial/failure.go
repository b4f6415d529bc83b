package safedial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"
)

// Failure is what a tenant may be told about a request that got no HTTP
// answer: a class from a fixed list. It never carries an address, a port,
// an error text or a response body, so that webhook URLs cannot be used to
// map the network bouncer runs in or read what internal services answer.
// The error itself (with addresses, the resolver's among them) is for the
// operator's logs only.
type Failure string

const (
	// FailBlocked: the guard refused the address (a host name resolved to
	// a blocked range, or to an allowed address on a port no rule names).
	FailBlocked Failure = "blocked"
	// FailDNS: the host name did not resolve.
	FailDNS Failure = "dns"
	// FailRefused: nothing accepted the connection.
	FailRefused Failure = "refused"
	// FailTimeout: no connection or no answer in time.
	FailTimeout Failure = "timeout"
	// FailTLS: the TLS handshake or the certificate check failed.
	FailTLS Failure = "tls"
	// FailConnection: any other failure (reset, closed before answering,
	// a malformed answer).
	FailConnection Failure = "connection"
)

// Classify returns the class of an error from a Guard's Client or
// Transport (nil gives "").
func Classify(err error) Failure {
	if err == nil {
		return ""
	}
	var blocked *BlockedError
	if errors.As(err, &blocked) {
		return FailBlocked
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return FailTimeout
		}
		return FailDNS
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return FailTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return FailRefused
	}
	var (
		alert    tls.AlertError
		header   tls.RecordHeaderError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	if errors.As(err, &alert) || errors.As(err, &header) || errors.As(err, &verify) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return FailTLS
	}
	// The TLS package reports some handshake failures as plain errors.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.HasPrefix(e.Error(), "tls: ") {
			return FailTLS
		}
	}
	return FailConnection
}

// Message is a sentence for the tenant, naming no address.
func (f Failure) Message() string {
	switch f {
	case FailBlocked:
		return "blocked: the host resolves to an address (or port) webhooks may not reach"
	case FailDNS:
		return "dns: the host name did not resolve"
	case FailRefused:
		return "refused: the connection was refused"
	case FailTimeout:
		return "timeout: no answer in time"
	case FailTLS:
		return "tls: the TLS handshake or certificate check failed"
	case FailConnection:
		return "connection: the connection failed or closed before an answer"
	}
	return string(f)
}
