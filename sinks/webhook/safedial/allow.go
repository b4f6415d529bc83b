package safedial

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule opens some ports of a network that a blocked range contains. A rule
// always names its ports: opening a whole private or loopback network would
// let anyone who can set a webhook URL POST to every service listening
// there (ClickHouse's HTTP interface, Kafka, metrics, admin pages).
//
// Written as host:port or host:first-last, where host is an IPv4 address or
// prefix, or an IPv6 address or prefix in square brackets:
//
//	127.0.0.1:8080         one address, one port
//	127.0.0.1:9000-9099    one address, ports 9000 to 9099
//	[::1]:8080             IPv6 loopback, one port
//	10.0.0.0/8:443         a network, one port
//	[fd00:1::/32]:443      an IPv6 network, one port
type Rule struct {
	// Prefix is the network; a single address is a /32 or /128.
	Prefix netip.Prefix
	// First and Last bound the ports, inclusive; First == Last for one port.
	First, Last uint16
}

// Contains reports whether the rule opens ap's address and port.
func (r Rule) Contains(ap netip.AddrPort) bool {
	return r.Prefix.Contains(ap.Addr()) && ap.Port() >= r.First && ap.Port() <= r.Last
}

// String writes the rule in the form ParseRule reads; a single address
// drops its /32 or /128.
func (r Rule) String() string {
	host := r.Prefix.String()
	if r.Prefix.IsSingleIP() {
		host = r.Prefix.Addr().String()
	}
	if r.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	if r.First == r.Last {
		return fmt.Sprintf("%s:%d", host, r.First)
	}
	return fmt.Sprintf("%s:%d-%d", host, r.First, r.Last)
}

// RuleFor is the rule opening exactly one address and port.
func RuleFor(ap netip.AddrPort) Rule {
	a := ap.Addr().WithZone("")
	return Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), First: ap.Port(), Last: ap.Port()}
}

// allowExamples is what every parse error offers as the way to write an
// entry.
const allowExamples = "write host:port or host:first-last, for example 127.0.0.1:8080, 127.0.0.1:9000-9099, [::1]:8080 or 10.0.0.0/8:443"

// ParseRule reads one rule (see Rule for the syntax). Errors say what is
// wrong and how to write the entry; they do not name the variable it came
// from.
func ParseRule(s string) (Rule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Rule{}, fmt.Errorf("the entry is empty; %s", allowExamples)
	}
	if strings.Contains(s, "%") {
		return Rule{}, fmt.Errorf("%q has an IPv6 zone (%%...); write the address without it", s)
	}
	var host, ports string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return Rule{}, fmt.Errorf("%q opens a [ it does not close; %s", s, allowExamples)
		}
		host, ports = s[1:end], s[end+1:]
		if ports == "" {
			return Rule{}, noPort(s, s)
		}
		if !strings.HasPrefix(ports, ":") {
			return Rule{}, fmt.Errorf("%q: after ] comes :port; %s", s, allowExamples)
		}
		ports = ports[1:]
		if !strings.Contains(host, ":") {
			return Rule{}, fmt.Errorf("%q: square brackets are for IPv6 addresses; write an IPv4 entry without them, like 127.0.0.1:8080", s)
		}
	} else {
		switch strings.Count(s, ":") {
		case 0:
			return Rule{}, noPort(s, s)
		case 1:
			host, ports, _ = strings.Cut(s, ":")
		default:
			if _, err := parseHost(s, s); err == nil {
				return Rule{}, noPort(s, "["+s+"]")
			}
			return Rule{}, fmt.Errorf("%q is not an entry: an IPv6 address goes in square brackets before its port; %s", s, allowExamples)
		}
	}
	p, err := parseHost(s, host)
	if err != nil {
		return Rule{}, err
	}
	first, last, err := parsePorts(s, ports)
	if err != nil {
		return Rule{}, err
	}
	return Rule{Prefix: p, First: first, Last: last}, nil
}

// noPort is the error for an entry without ports; bracketed is how the
// host reads in the suggestion.
func noPort(entry, host string) error {
	bare := strings.Trim(host, "[]")
	if p, err := parseHost(entry, bare); err == nil && p.IsSingleIP() {
		host = p.Addr().String()
		if p.Addr().Is6() {
			host = "[" + host + "]"
		}
	}
	return fmt.Errorf("%q names no port: an entry opens only the ports it names, so that a webhook URL cannot reach every service on an internal network; write %s:8080 for one port or %s:9000-9099 for a range (the ports your receivers listen on)",
		entry, host, host)
}

func parseHost(entry, host string) (netip.Prefix, error) {
	if !strings.Contains(host, "/") {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q: %q is not an IP address or CIDR prefix; %s", entry, host, allowExamples)
		}
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(host)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q: %q is not a CIDR prefix (like 10.1.2.0/24 or fd00::/8; the length is 0-32 for IPv4, 0-128 for IPv6)", entry, host)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q: %q has address bits set past the /%d prefix length; write %s for the network or %s for the one address",
			entry, host, p.Bits(), p.Masked(), p.Addr())
	}
	return p, nil
}

func parsePorts(entry, ports string) (first, last uint16, err error) {
	lo, hi, isRange := strings.Cut(ports, "-")
	first, err = parsePort(entry, lo)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return first, first, nil
	}
	last, err = parsePort(entry, hi)
	if err != nil {
		return 0, 0, err
	}
	if last < first {
		return 0, 0, fmt.Errorf("%q: the port range %s runs backwards; write the lower port first (%d-%d)", entry, ports, last, first)
	}
	return first, last, nil
}

func parsePort(entry, s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: port %q is not a number from 1 to 65535; %s", entry, s, allowExamples)
	}
	return uint16(n), nil
}

// ParseAllowList reads a comma-separated list of rules (see Rule), with
// optional spaces, for example "127.0.0.1:8080, [::1]:8080". An empty
// string is an empty list. Errors start with EnvAllow and say how to write
// the entry; a caller reading another setting can wrap ParseRule instead.
func ParseAllowList(s string) ([]Rule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Rule
	for i, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			return nil, fmt.Errorf("%s: entry %d is empty (a stray comma?); write entries like 127.0.0.1:8080,[::1]:8080", EnvAllow, i+1)
		}
		r, err := ParseRule(item)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvAllow, err)
		}
		out = append(out, r)
	}
	return out, nil
}
