// Package safedial keeps webhook requests away from the networks bouncer
// runs in (server-side request forgery): customers choose webhook URLs, so
// without a guard a URL could make bouncer POST to its own ClickHouse, a
// cloud metadata service or anything else on the private network.
//
// Guarantees of a Guard's Transport and Client:
//
//   - Every connection is checked on the resolved IP address at dial time,
//     by a net.Dialer Control function that runs after DNS resolution and
//     before connect(2). A name that resolved to a public address when the
//     URL was registered and to a private one now (DNS rebinding) is refused,
//     and so is each address a name resolves to, whichever the dialer tries.
//   - Never through a proxy: Proxy is nil, so HTTP_PROXY and friends are
//     ignored (a proxy would hide the real target from the check).
//   - Client does not follow redirects at all: a 3xx is returned to the
//     caller as the response (the Standard Webhooks recommendation: a
//     redirect is a failure and the URL should be updated). Even a client
//     that does follow redirects over Transport has every hop checked, since
//     each hop dials through the same Control.
//   - Blocked by default: the IPv4 and IPv6 special-purpose ranges listed in
//     Ranges (this-network, private, loopback, link-local, carrier-grade
//     NAT, IETF protocol assignments, documentation, benchmarking,
//     multicast, reserved and broadcast; IPv6 unspecified, loopback, unique
//     local, link-local, site-local, multicast, documentation, discard and
//     everything outside global unicast 2000::/3). IPv6 addresses that embed
//     an IPv4 address (IPv4-mapped, IPv4-translated, IPv4-compatible, NAT64
//     64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are judged by the IPv4
//     address they lead to.
//   - An explicit allow-list (Guard.Allow, from BOUNCER_WEBHOOK_ALLOW_NETS)
//     overrides the block for the addresses and ports it names, and nothing
//     else. Every entry names its ports (see Rule): opening 127.0.0.1 would
//     open ClickHouse, Kafka and every other service on the machine.
//   - A refusal is a *BlockedError naming the address, the port, the range
//     and how to allow it; errors.As finds it through the client's
//     *url.Error. Its text is for operators: what a tenant may be told about
//     a failed request is Classify's Failure, which names no address.
//
// What it does not do: it does not limit which public hosts are reached,
// nor guard connections made by other clients in the process. Resolution
// itself (DNS queries) is not guarded; only the webhook connection is.
package safedial

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// EnvAllow is the environment variable holding the allow-list, read with
// ParseAllowList.
const EnvAllow = "BOUNCER_WEBHOOK_ALLOW_NETS"

// Guard decides which addresses webhook connections may reach. The zero
// Guard blocks every range in Ranges and allows every other address.
type Guard struct {
	// Allow lists the addresses and ports that are reachable even though a
	// blocked range contains them (for example 127.0.0.1:8080 in tests, or
	// 10.20.0.0/16:443 for receivers inside a private network). Empty by
	// default.
	Allow []Rule
}

// BlockedError reports an address the guard refused.
type BlockedError struct {
	// IP is the address that was checked (as dialed, without zone).
	IP netip.Addr
	// Port is the port that was checked.
	Port uint16
	// Range names the blocked range, for example "private network".
	Range string
	// Prefix is the blocked range itself, for example 10.0.0.0/8.
	Prefix netip.Prefix
	// Embedded is, when IP is an IPv6 form embedding an IPv4 address, the
	// IPv4 address that lies in Prefix; Via names the embedding ("NAT64").
	// Both are zero otherwise.
	Embedded netip.Addr
	Via      string

	article string
}

func (e *BlockedError) Error() string {
	rangeName := e.Range
	if e.article != "" {
		rangeName = e.article + " " + e.Range
	}
	if !e.IP.IsValid() {
		return "the address is not a valid IP address: webhooks may not reach it"
	}
	allow := RuleFor(netip.AddrPortFrom(e.IP, e.Port))
	if e.Embedded.IsValid() {
		allow = RuleFor(netip.AddrPortFrom(e.Embedded, e.Port))
		return fmt.Sprintf("address %s is the %s form of %s, which is in %s (%s): webhooks may not reach it; to allow it, add %s to %s",
			e.IP, e.Via, e.Embedded, rangeName, e.Prefix, allow, EnvAllow)
	}
	return fmt.Sprintf("address %s is in %s (%s): webhooks may not reach it; to allow it, add %s to %s",
		e.IP, rangeName, e.Prefix, allow, EnvAllow)
}

// Range is one special-purpose block the guard refuses by default.
type Range struct {
	Prefix netip.Prefix
	// Name says what the range is, for example "private network".
	Name    string
	article string
	// embedded, when set, extracts the IPv4 addresses an address in this
	// range leads to; the address is judged by those instead.
	embedded func(netip.Addr) []netip.Addr
}

func r(prefix, article, name string) Range {
	return Range{Prefix: netip.MustParsePrefix(prefix), Name: name, article: article}
}

func embedding(prefix, name string, extract func(netip.Addr) []netip.Addr) Range {
	return Range{Prefix: netip.MustParsePrefix(prefix), Name: name, embedded: extract}
}

// low32 is the IPv4 address in the last 32 bits of an IPv6 address.
func low32(a netip.Addr) []netip.Addr {
	b := a.As16()
	return []netip.Addr{netip.AddrFrom4([4]byte(b[12:16]))}
}

// sixToFour is the IPv4 address in bits 16..47 of a 6to4 address.
func sixToFour(a netip.Addr) []netip.Addr {
	b := a.As16()
	return []netip.Addr{netip.AddrFrom4([4]byte(b[2:6]))}
}

// teredo returns the client's public IPv4 address (the last 32 bits,
// inverted), where traffic ends up, and the Teredo server (bits 32..63).
func teredo(a netip.Addr) []netip.Addr {
	b := a.As16()
	client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
	return []netip.Addr{netip.AddrFrom4(client), netip.AddrFrom4([4]byte(b[4:8]))}
}

// Ranges4 and Ranges6 are the blocked ranges, most specific first. Any IPv6
// address outside global unicast 2000::/3 that none of them names is also
// blocked (see globalUnicast).
var (
	Ranges4 = []Range{
		r("0.0.0.0/8", "the", `"this network" block`),
		r("10.0.0.0/8", "a", "private network"),
		r("100.64.0.0/10", "the", "carrier-grade NAT shared space"),
		r("127.0.0.0/8", "the", "loopback network"),
		r("169.254.0.0/16", "the", "link-local network (where cloud metadata services live)"),
		r("172.16.0.0/12", "a", "private network"),
		r("192.0.0.0/24", "the", "IETF protocol assignments block"),
		r("192.0.2.0/24", "a", "documentation network"),
		r("192.168.0.0/16", "a", "private network"),
		r("198.18.0.0/15", "the", "benchmarking network"),
		r("198.51.100.0/24", "a", "documentation network"),
		r("203.0.113.0/24", "a", "documentation network"),
		r("224.0.0.0/4", "the", "multicast range"),
		r("255.255.255.255/32", "the", "broadcast address"),
		r("240.0.0.0/4", "the", "reserved range"),
	}
	Ranges6 = []Range{
		r("::/128", "the", "unspecified address"),
		r("::1/128", "the", "loopback address"),
		embedding("::ffff:0:0/96", "IPv4-mapped", low32),
		embedding("::ffff:0:0:0/96", "IPv4-translated", low32),
		embedding("::/96", "IPv4-compatible", low32),
		embedding("64:ff9b::/96", "NAT64", low32),
		r("64:ff9b:1::/48", "the", "local-use NAT64 prefix"),
		r("100::/64", "the", "discard prefix"),
		embedding("2001::/32", "Teredo", teredo),
		r("2001:2::/48", "the", "benchmarking network"),
		r("2001:db8::/32", "a", "documentation network"),
		embedding("2002::/16", "6to4", sixToFour),
		r("3fff::/20", "a", "documentation network"),
		r("fc00::/7", "a", "unique local network (IPv6 private)"),
		r("fe80::/10", "the", "link-local network"),
		r("fec0::/10", "the", "site-local network"),
		r("ff00::/8", "the", "multicast range"),
	}
	globalUnicast = netip.MustParsePrefix("2000::/3")
)

func (g Guard) allowed(ap netip.AddrPort) bool {
	for _, r := range g.Allow {
		if r.Contains(ap) {
			return true
		}
	}
	return false
}

// Check returns nil if webhooks may reach the address and port, or a
// *BlockedError naming the range that contains the address. An address and
// port a rule of Allow names are always reachable; an IPv6 address
// embedding an IPv4 address is also reachable when Allow names that IPv4
// address with the port.
func (g Guard) Check(ap netip.AddrPort) error {
	ip, port := ap.Addr(), ap.Port()
	if !ip.IsValid() {
		return &BlockedError{Range: "invalid address"}
	}
	ip = ip.WithZone("")
	if g.allowed(netip.AddrPortFrom(ip, port)) {
		return nil
	}
	if ip.Is4() {
		for _, rg := range Ranges4 {
			if rg.Prefix.Contains(ip) {
				return &BlockedError{IP: ip, Port: port, Range: rg.Name, Prefix: rg.Prefix, article: rg.article}
			}
		}
		return nil
	}
	for _, rg := range Ranges6 {
		if !rg.Prefix.Contains(ip) {
			continue
		}
		if rg.embedded == nil {
			return &BlockedError{IP: ip, Port: port, Range: rg.Name, Prefix: rg.Prefix, article: rg.article}
		}
		for _, v4 := range rg.embedded(ip) {
			err := g.Check(netip.AddrPortFrom(v4, port))
			if be, ok := err.(*BlockedError); ok {
				return &BlockedError{IP: ip, Port: port, Range: be.Range, Prefix: be.Prefix, Embedded: v4, Via: rg.Name, article: be.article}
			}
		}
		return nil
	}
	if !globalUnicast.Contains(ip) {
		return &BlockedError{IP: ip, Port: port, Range: "reserved IPv6 space (outside global unicast 2000::/3)", Prefix: reservedPrefix(ip), article: "the"}
	}
	return nil
}

// reservedPrefix names the /8 of an IPv6 address outside 2000::/3, for the
// error message.
func reservedPrefix(ip netip.Addr) netip.Prefix {
	p, _ := ip.Prefix(8)
	return p
}

// Control checks the address a connection is about to be made to; use it
// as net.Dialer.Control. It runs after name resolution, for every address
// the dialer tries.
func (g Guard) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook dial to %q refused: not an IP address and port: %w", address, err)
	}
	return g.Check(ap)
}

// Dialer returns a net.Dialer whose every connection is checked by g.
func (g Guard) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control:   g.Control,
	}
}

// DefaultTimeout is used when Transport or Client get a timeout <= 0; the
// Standard Webhooks specification recommends 15 to 30 seconds.
const DefaultTimeout = 15 * time.Second

// Transport returns an http.Transport for webhook requests: every
// connection checked by g at dial time, no proxy, connection setup (dial,
// TLS handshake) and the wait for response headers each bounded by
// timeout (DefaultTimeout when <= 0), idle connections kept per endpoint
// host for reuse (8 per host, 1024 in all, closed after 90 s idle), and
// response headers capped at 64 KiB. Callers still bound each whole
// request with a context deadline or Client's Timeout.
func (g Guard) Transport(timeout time.Duration) *http.Transport {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := g.Dialer(timeout)
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    8,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// Client returns an http.Client over Transport(timeout) that never follows
// redirects (CheckRedirect returns http.ErrUseLastResponse, so a 3xx comes
// back as the response) and bounds each whole request by timeout
// (DefaultTimeout when <= 0).
func (g Guard) Client(timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{
		Transport: g.Transport(timeout),
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// FromEnv returns a Guard with the allow-list read from EnvAllow through
// getenv (os.Getenv in production); unset means no exceptions.
func FromEnv(getenv func(string) string) (Guard, error) {
	allow, err := ParseAllowList(getenv(EnvAllow))
	if err != nil {
		return Guard{}, err
	}
	return Guard{Allow: allow}, nil
}
