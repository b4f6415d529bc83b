package safedial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Each failure a tenant's URL can cause gets its class, and the class's
// message names no address, port or error text: the security review used
// the texts (connection refused / EOF / the resolver's address) to scan
// the internal network.
func TestClassify(t *testing.T) {
	// refused: a port nothing listens on.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	// connection: a server that closes without answering.
	hangup := newServer(t, "tcp4", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	// timeout: a server that answers after the client gave up.
	release := make(chan struct{})
	slow := newServer(t, "tcp4", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) })
	// tls: a certificate the client does not trust.
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	allow := []Rule{
		RuleFor(netip.MustParseAddrPort(closedAddr)),
		RuleFor(netip.MustParseAddrPort(hangup.Listener.Addr().String())),
		RuleFor(netip.MustParseAddrPort(slow.Listener.Addr().String())),
		RuleFor(netip.MustParseAddrPort(tlsSrv.Listener.Addr().String())),
	}
	g := Guard{Allow: allow}
	cases := []struct {
		name, url string
		timeout   time.Duration
		want      Failure
	}{
		{"refused", "http://" + closedAddr + "/", 10 * time.Second, FailRefused},
		{"closed without answer", hangup.URL, 10 * time.Second, FailConnection},
		{"no answer in time", slow.URL, 300 * time.Millisecond, FailTimeout},
		{"untrusted certificate", tlsSrv.URL, 10 * time.Second, FailTLS},
		{"blocked address", "http://127.0.0.1:1/", 10 * time.Second, FailBlocked},
		{"port not in the allow-list", "http://127.0.0.1:8123/?query=SELECT%201", 10 * time.Second, FailBlocked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := post(t, g.Client(tc.timeout), tc.url)
			if err == nil {
				t.Fatal("request succeeded, want it to fail")
			}
			if got := Classify(err); got != tc.want {
				t.Fatalf("Classify(%v) = %q, want %q", err, got, tc.want)
			}
			wantNoDetail(t, Classify(err).Message(), tc.url)
		})
	}
}

// A resolver failure's text names the resolver ("lookup x on
// 10.0.0.2:53: ..."); the class does not.
func TestClassifyDNS(t *testing.T) {
	err := fmt.Errorf("dial: %w", &net.DNSError{Err: "no such host", Name: "hooks.example", Server: "10.0.0.2:53", IsNotFound: true})
	if got := Classify(err); got != FailDNS {
		t.Fatalf("Classify = %q, want dns", got)
	}
	if !strings.Contains(err.Error(), "10.0.0.2") {
		t.Fatal("test premise: the error names the resolver")
	}
	wantNoDetail(t, Classify(err).Message(), "10.0.0.2")
	timeout := &net.DNSError{Err: "i/o timeout", Name: "hooks.example", Server: "10.0.0.2:53", IsTimeout: true}
	if got := Classify(timeout); got != FailTimeout {
		t.Fatalf("Classify(resolver timeout) = %q, want timeout", got)
	}
	if Classify(nil) != "" || Classify(context.DeadlineExceeded) != FailTimeout || Classify(errors.New("EOF")) != FailConnection {
		t.Fatal("nil, deadline or other error misclassified")
	}
}

// wantNoDetail fails when a tenant-facing message carries an address, a
// port or a digit at all.
func wantNoDetail(t *testing.T, msg, url string) {
	t.Helper()
	if msg == "" || strings.ContainsAny(msg, "0123456789") || strings.Contains(msg, "127.") || strings.Contains(msg, url) {
		t.Fatalf("message %q gives details away", msg)
	}
}
