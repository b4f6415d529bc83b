// Package smtptest runs a real SMTP server on 127.0.0.1 for tests: go-smtp
// with AUTH (PLAIN, LOGIN, CRAM-MD5), STARTTLS or implicit TLS on a
// self-signed certificate the test trusts through CAFile or CAPool, and
// hooks that make it answer 4xx or 5xx.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options of a Server.
type Options struct {
	// Username and Password, when set, are required (AUTH PLAIN, LOGIN or
	// CRAM-MD5) before MAIL FROM.
	Username, Password string
	// TLS is "starttls" (the default), "tls" (implicit TLS from the first
	// byte) or "none".
	TLS string
}

// Message is one accepted message.
type Message struct {
	From   string
	To     []string
	Header mail.Header
	// Body is decoded from its Content-Transfer-Encoding.
	Body string
	Raw  []byte
}

// Server is a running SMTP server; it stops in t.Cleanup.
type Server struct {
	// Addr is host:port; Host and Port are its parts.
	Addr string
	Host string
	Port int
	// CAFile is a PEM file holding the server certificate (self-signed),
	// CAPool the same as a pool.
	CAFile string
	CAPool *x509.CertPool

	opts Options
	mu   sync.Mutex
	msgs []Message
	// tempFailures: the next n transactions get 451 at DATA.
	tempFailures int
	// attempts counts DATA commands, failed or not.
	attempts int
	reject   map[string]bool
	notify   chan struct{}
}

// Start starts a server on 127.0.0.1:0.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.TLS == "" {
		opts.TLS = "starttls"
	}
	cert, pemBytes, err := selfSigned()
	if err != nil {
		t.Fatalf("smtptest: certificate: %v", err)
	}
	caFile := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	s := &Server{CAFile: caFile, CAPool: pool, opts: opts, reject: map[string]bool{}, notify: make(chan struct{}, 1)}

	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = discard{}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	switch opts.TLS {
	case "starttls":
		srv.TLSConfig = tlsCfg
	case "tls":
		ln = tls.NewListener(ln, tlsCfg)
	case "none":
		srv.AllowInsecureAuth = true
	default:
		t.Fatalf("smtptest: TLS %q: want starttls, tls or none", opts.TLS)
	}
	s.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	fmt.Sscan(port, &s.Port)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// FailNext makes the next n transactions fail at DATA with 451 4.3.0.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	s.tempFailures = n
	s.mu.Unlock()
}

// Reject makes RCPT TO addr fail with 550 5.1.1 from now on.
func (s *Server) Reject(addr string) {
	s.mu.Lock()
	s.reject[strings.ToLower(addr)] = true
	s.mu.Unlock()
}

// Attempts is how many DATA commands the server has seen.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Messages returns the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitFor waits until cond holds for the accepted messages or timeout
// passes, and returns them.
func (s *Server) WaitFor(timeout time.Duration, cond func([]Message) bool) ([]Message, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := s.Messages()
		if cond(msgs) {
			return msgs, true
		}
		select {
		case <-s.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			return s.Messages(), false
		}
	}
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: s}, nil
}

type session struct {
	srv    *Server
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.srv.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain, sasl.Login, "CRAM-MD5"}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	o := ss.srv.opts
	check := func(user, pass string) error {
		if user != o.Username || pass != o.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	case "CRAM-MD5":
		return &cramServer{user: o.Username, secret: o.Password, ok: func() { ss.authed = true }}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.srv.opts.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.srv.mu.Lock()
	rejected := ss.srv.reject[strings.ToLower(to)]
	ss.srv.mu.Unlock()
	if rejected {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.srv
	s.mu.Lock()
	s.attempts++
	if s.tempFailures > 0 {
		s.tempFailures--
		s.mu.Unlock()
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.mu.Unlock()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "unparsable message: " + err.Error()}
	}
	var bodyReader io.Reader = m.Body
	switch strings.ToLower(m.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		bodyReader = quotedprintable.NewReader(m.Body)
	case "base64":
		bodyReader = base64.NewDecoder(base64.StdEncoding, m.Body)
	}
	body, _ := io.ReadAll(bodyReader)
	s.mu.Lock()
	s.msgs = append(s.msgs, Message{From: ss.from, To: ss.to, Header: m.Header, Body: string(body), Raw: raw})
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN: ask for the user name,
// then the password.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check(l.user, string(resp))
	}
	return nil, false, errors.New("unexpected LOGIN step")
}

// cramServer is the server side of AUTH CRAM-MD5 (RFC 2195).
type cramServer struct {
	user, secret string
	ok           func()
	challenge    []byte
}

func (c *cramServer) Next(resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		var n [8]byte
		rand.Read(n[:])
		c.challenge = fmt.Appendf(nil, "<%x.%d@localhost>", n, time.Now().UnixNano())
		return c.challenge, false, nil
	}
	user, digest, ok := strings.Cut(string(resp), " ")
	mac := hmac.New(md5.New, []byte(c.secret))
	mac.Write(c.challenge)
	want := hex.EncodeToString(mac.Sum(nil))
	if !ok || user != c.user || !hmac.Equal([]byte(digest), []byte(want)) {
		return nil, true, smtp.ErrAuthFailed
	}
	c.ok()
	return nil, true, nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost that is its
// own CA, and returns it with its PEM.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "bouncer smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}

type discard struct{}

func (discard) Printf(string, ...interface{}) {}
func (discard) Println(...interface{})        {}
