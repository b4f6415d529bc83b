package safedial

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// MaxURLLength is the longest webhook URL ValidateURL accepts.
const MaxURLLength = 2048

// ValidateURL checks a webhook URL when it is registered: scheme http or
// https, a host, no user name or password, a valid port, no fragment, at
// most MaxURLLength characters. A literal IP host is checked with Check,
// with the URL's port (80 for http, 443 for https when it names none); a
// host name is accepted if it is well formed (the addresses it resolves to
// are checked at every dial). Errors are sentences an API user can act on.
func (g Guard) ValidateURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return errors.New("the webhook URL is empty; give a URL like https://example.com/webhooks")
	}
	if len(raw) > MaxURLLength {
		return fmt.Errorf("the webhook URL is %d characters long; the limit is %d", len(raw), MaxURLLength)
	}
	if raw != strings.TrimSpace(raw) {
		return errors.New("the webhook URL has spaces before or after it; remove them")
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return errors.New("the webhook URL contains a control character; remove it")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "[") {
			return errors.New("the webhook URL host in square brackets is not a valid IPv6 address")
		}
		return fmt.Errorf("the webhook URL is not a valid URL: %s", urlErrorReason(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return errors.New("the webhook URL must start with https:// or http://")
		}
		return fmt.Errorf("the webhook URL must use https or http, not %q", u.Scheme)
	}
	if u.Opaque != "" {
		return fmt.Errorf("the webhook URL must have the form %s://host/path", u.Scheme)
	}
	if u.User != nil {
		return errors.New("the webhook URL must not contain a user name or password; requests are signed instead (see the signing settings)")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("the webhook URL must not contain a fragment (the part from '#'); fragments are never sent to the server")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("the webhook URL has no host; give a URL like https://example.com/webhooks")
	}
	port := uint16(80)
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("the webhook URL port %q is not a number from 1 to 65535", p)
		}
		port = uint16(n)
	}
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() {
			return fmt.Errorf("the webhook URL host %q is not a valid IPv6 address", host)
		}
		if ip.Zone() != "" {
			return errors.New("the webhook URL host must not carry an IPv6 zone (%...)")
		}
		return g.Check(netip.AddrPortFrom(ip, port))
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is6() {
			return errors.New("the webhook URL's IPv6 host must be in square brackets, like https://[2001:db8::1]/webhooks")
		}
		return g.Check(netip.AddrPortFrom(ip, port))
	}
	return checkHostname(host)
}

// checkHostname accepts DNS names made of letters, digits, '-' and '_'
// labels, and refuses names some resolvers would read as IPv4 addresses in
// another notation (127.1, 0x7f.1, 2130706433), which must not slip past the
// literal-address check.
func checkHostname(host string) error {
	name := strings.TrimSuffix(host, ".")
	if len(name) > 253 {
		return fmt.Errorf("the webhook URL host is %d characters long; a host name has at most 253", len(name))
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return fmt.Errorf("the webhook URL host %q has an empty label (two dots in a row?)", host)
		}
		if len(label) > 63 {
			return fmt.Errorf("the webhook URL host %q has a label longer than 63 characters", host)
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("the webhook URL host %q contains %q; use letters, digits, '-' and '.' (write international names in their xn-- form)", host, c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("the webhook URL host %q has a label starting or ending with '-'", host)
		}
	}
	if looksNumeric(labels[len(labels)-1]) {
		return fmt.Errorf("the webhook URL host %q looks like an IP address in a nonstandard form; write IPv4 addresses as four decimal numbers (like 192.0.2.10) or use a host name", host)
	}
	return nil
}

// looksNumeric reports whether a final label is a number (decimal, octal
// or 0x hex): the WHATWG URL standard parses such hosts as IPv4.
func looksNumeric(label string) bool {
	l := strings.ToLower(label)
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		if l == "" {
			return true
		}
		for _, c := range l {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// urlErrorReason returns url.Parse's reason without repeating the URL.
func urlErrorReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
