package safedial

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// All connections in these tests go to loopback addresses.

func newServer(t *testing.T, network, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func countingHandler(hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	})
}

func rules(t *testing.T, s string) []Rule {
	t.Helper()
	r, err := ParseAllowList(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// only is the allow-list naming exactly a test server's address and port.
func only(srv *httptest.Server) []Rule {
	return []Rule{RuleFor(netip.MustParseAddrPort(srv.Listener.Addr().String()))}
}

// ap reads "address" or "address port" (port 443 when none is given).
func ap(s string) netip.AddrPort {
	addr, port, ok := strings.Cut(s, " ")
	if !ok {
		port = "443"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		panic(err)
	}
	return netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(n))
}

func post(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(`[]`))
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func wantBlocked(t *testing.T, err error, prefix string) *BlockedError {
	t.Helper()
	if err == nil {
		t.Fatal("request succeeded, want it refused")
	}
	var be *BlockedError
	if !errors.As(err, &be) {
		t.Fatalf("error %v (%T) does not carry a *BlockedError", err, err)
	}
	if be.Prefix.String() != prefix {
		t.Fatalf("blocked by %s, want %s (%v)", be.Prefix, prefix, err)
	}
	if !strings.Contains(err.Error(), EnvAllow) {
		t.Fatalf("error %q does not say how to allow the address", err)
	}
	return be
}

func TestLoopbackIPv4RefusedThenAllowed(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, "tcp4", "127.0.0.1:0", countingHandler(&hits))

	_, err := post(t, Guard{}.Client(10*time.Second), srv.URL)
	be := wantBlocked(t, err, "127.0.0.0/8")
	if be.IP != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("BlockedError.IP = %s", be.IP)
	}
	if hits.Load() != 0 {
		t.Fatal("the refused request reached the server")
	}

	allowed := Guard{Allow: only(srv)}
	resp, err := post(t, allowed.Client(10*time.Second), srv.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("allowed request: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("server hits = %d, want 1", hits.Load())
	}
}

func TestHostnameResolvingToLoopbackRefusedAtDial(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, "tcp4", "127.0.0.1:0", countingHandler(&hits))
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	url := "http://localhost:" + port + "/hook"

	g := Guard{}
	if err := g.ValidateURL(url); err != nil {
		t.Fatalf("a host name passes registration (it is checked at dial time): %v", err)
	}
	_, err := post(t, g.Client(10*time.Second), url)
	wantBlocked(t, err, "127.0.0.0/8")
	if hits.Load() != 0 {
		t.Fatal("the refused request reached the server")
	}
	// The bare transport (a caller's own client) is guarded too.
	_, err = post(t, &http.Client{Transport: g.Transport(10 * time.Second)}, url)
	wantBlocked(t, err, "127.0.0.0/8")
}

func TestLoopbackIPv6RefusedThenAllowed(t *testing.T) {
	var hits atomic.Int64
	srv := newServer(t, "tcp6", "[::1]:0", countingHandler(&hits))
	if !strings.HasPrefix(srv.URL, "http://[::1]:") {
		t.Fatalf("server URL %s", srv.URL)
	}
	_, err := post(t, Guard{}.Client(10*time.Second), srv.URL)
	wantBlocked(t, err, "::1/128")

	// Allowing IPv4 loopback does not open IPv6 loopback.
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	_, err = post(t, Guard{Allow: rules(t, "127.0.0.1:"+port)}.Client(10*time.Second), srv.URL)
	wantBlocked(t, err, "::1/128")

	resp, err := post(t, Guard{Allow: rules(t, "[::1]:"+port)}.Client(10*time.Second), srv.URL)
	if err != nil || resp.StatusCode != 200 || hits.Load() != 1 {
		t.Fatalf("allowed ::1: %v, hits %d", err, hits.Load())
	}
}

func TestRedirectToBlockedAddressNotFollowed(t *testing.T) {
	var blockedHits, allowedHits atomic.Int64
	// 127.0.0.2 is loopback too, but outside the allow-list.
	blocked := newServer(t, "tcp4", "127.0.0.2:0", countingHandler(&blockedHits))
	allowedSrv := newServer(t, "tcp4", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowedHits.Add(1)
		http.Redirect(w, r, blocked.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	g := Guard{Allow: only(allowedSrv)}

	// The webhook client returns the redirect as the response.
	resp, err := post(t, g.Client(10*time.Second), allowedSrv.URL)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != blocked.URL+"/internal" {
		t.Fatalf("client got %d %q, want the 307 itself", resp.StatusCode, resp.Header.Get("Location"))
	}

	// A client that does follow redirects over the guarded transport is
	// stopped at the blocked hop.
	follower := &http.Client{Transport: g.Transport(10 * time.Second)}
	_, err = post(t, follower, allowedSrv.URL)
	wantBlocked(t, err, "127.0.0.0/8")

	if blockedHits.Load() != 0 {
		t.Fatalf("the blocked server got %d requests", blockedHits.Load())
	}
	if allowedHits.Load() != 2 {
		t.Fatalf("the allowed server got %d requests, want 2", allowedHits.Load())
	}
}

func TestProxyFromEnvironmentIgnored(t *testing.T) {
	var proxyHits, hits atomic.Int64
	proxy := newServer(t, "tcp4", "127.0.0.1:0", countingHandler(&proxyHits))
	srv := newServer(t, "tcp4", "127.0.0.1:0", countingHandler(&hits))
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("http_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")
	tr := Guard{Allow: only(srv)}.Transport(0)
	if tr.Proxy != nil {
		t.Fatal("transport has a proxy function")
	}
	// Loopback targets never go through the environment proxy anyway, so
	// the Proxy field above is the real check; this confirms the request
	// still goes straight to the target.
	if _, err := post(t, &http.Client{Transport: tr}, srv.URL); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 || proxyHits.Load() != 0 {
		t.Fatalf("target hits %d, proxy hits %d", hits.Load(), proxyHits.Load())
	}
}

func TestCheckRanges(t *testing.T) {
	blocked := []struct{ addr, prefix string }{
		// IPv4
		{"0.0.0.0", "0.0.0.0/8"},
		{"0.1.2.3", "0.0.0.0/8"},
		{"10.0.0.5", "10.0.0.0/8"},
		{"10.255.255.255", "10.0.0.0/8"},
		{"172.16.0.1", "172.16.0.0/12"},
		{"172.31.255.254", "172.16.0.0/12"},
		{"192.168.1.1", "192.168.0.0/16"},
		{"127.0.0.1", "127.0.0.0/8"},
		{"127.255.0.9", "127.0.0.0/8"},
		{"169.254.169.254", "169.254.0.0/16"},
		{"100.64.0.1", "100.64.0.0/10"},
		{"100.127.255.255", "100.64.0.0/10"},
		{"192.0.0.8", "192.0.0.0/24"},
		{"192.0.2.1", "192.0.2.0/24"},
		{"198.51.100.7", "198.51.100.0/24"},
		{"203.0.113.9", "203.0.113.0/24"},
		{"198.18.0.1", "198.18.0.0/15"},
		{"198.19.255.255", "198.18.0.0/15"},
		{"224.0.0.1", "224.0.0.0/4"},
		{"239.255.255.250", "224.0.0.0/4"},
		{"240.0.0.1", "240.0.0.0/4"},
		{"255.255.255.254", "240.0.0.0/4"},
		{"255.255.255.255", "255.255.255.255/32"},
		// IPv6
		{"::", "::/128"},
		{"::1", "::1/128"},
		{"fc00::1", "fc00::/7"},
		{"fd12:3456::1", "fc00::/7"},
		{"fe80::1", "fe80::/10"},
		{"fe80::1%eth0", "fe80::/10"},
		{"febf::1", "fe80::/10"},
		{"fec0::1", "fec0::/10"},
		{"ff02::1", "ff00::/8"},
		{"ff0e::1", "ff00::/8"},
		{"2001:db8::1", "2001:db8::/32"},
		{"3fff::1", "3fff::/20"},
		{"3fff:fff::1", "3fff::/20"},
		{"100::1", "100::/64"},
		{"2001:2::1", "2001:2::/48"},
		{"64:ff9b:1::1", "64:ff9b:1::/48"},
		{"4000::1", "4000::/8"}, // outside 2000::/3
		{"::2:0:0:1", "::/8"},   // outside 2000::/3, embeds nothing
		// IPv6 forms embedding a blocked IPv4 address
		{"::ffff:10.0.0.5", "10.0.0.0/8"},
		{"::ffff:127.0.0.1", "127.0.0.0/8"},
		{"::ffff:169.254.169.254", "169.254.0.0/16"},
		{"::ffff:0:192.168.0.1", "192.168.0.0/16"}, // IPv4-translated
		{"::127.0.0.1", "127.0.0.0/8"},             // IPv4-compatible
		{"64:ff9b::10.0.0.1", "10.0.0.0/8"},        // NAT64
		{"64:ff9b::7f00:1", "127.0.0.0/8"},
		{"2002:a00:1::1", "10.0.0.0/8"},                          // 6to4 of 10.0.0.1
		{"2002:7f00:1::", "127.0.0.0/8"},                         // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", "169.254.0.0/16"},                  // 6to4 of the metadata address
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "192.0.2.0/24"}, // RFC 4380's Teredo example: client 192.0.2.45
		{"2001:0:808:808:0:0:80ff:fffe", "127.0.0.0/8"},          // Teredo, client 127.0.0.1
		{"2001:0:a00:1:0:0:f7f7:f7f7", "10.0.0.0/8"},             // Teredo via a server in 10/8
	}
	for _, tc := range blocked {
		t.Run(tc.addr, func(t *testing.T) {
			err := Guard{}.Check(ap(tc.addr))
			var be *BlockedError
			if !errors.As(err, &be) {
				t.Fatalf("Check(%s) = %v, want blocked by %s", tc.addr, err, tc.prefix)
			}
			if be.Prefix.String() != tc.prefix {
				t.Fatalf("Check(%s) blocked by %s, want %s", tc.addr, be.Prefix, tc.prefix)
			}
		})
	}

	public := []string{
		"8.8.8.8", "1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
		"172.15.255.255", "172.32.0.0", "192.167.255.255", "192.169.0.0", "198.17.255.255",
		"198.20.0.0", "223.255.255.255", "169.253.255.255", "192.0.1.1", "126.255.255.255", "128.0.0.1",
		"2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::1", "3fff:1000::1",
		"::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1",
		"2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo: client 8.8.8.8, server 65.54.227.120
		"2001:db9::1",
	}
	for _, addr := range public {
		t.Run(addr, func(t *testing.T) {
			if err := (Guard{}).Check(ap(addr)); err != nil {
				t.Fatalf("Check(%s) = %v, want allowed", addr, err)
			}
		})
	}
}

func TestCheckAllowList(t *testing.T) {
	g := Guard{Allow: rules(t, "127.0.0.1:8080, 10.20.0.0/16:443, [fd00:1::/32]:9000-9099, [::1]:8080")}
	for _, addr := range []string{"127.0.0.1 8080", "10.20.3.4 443", "fd00:1::5 9000", "fd00:1::5 9050", "fd00:1::5 9099",
		"::ffff:127.0.0.1 8080", "64:ff9b::a14:1 443", "::1 8080", "8.8.8.8 443", "8.8.8.8 8123"} {
		if err := g.Check(ap(addr)); err != nil {
			t.Errorf("%s: %v, want allowed", addr, err)
		}
	}
	// The finding of the security review: an allowed loopback address
	// opened every port on it (ClickHouse's HTTP port 8123 among them).
	for _, addr := range []string{"127.0.0.1 8123", "127.0.0.1 9000", "127.0.0.1 8081", "127.0.0.1 8079", "10.20.3.4 80",
		"fd00:1::5 8999", "fd00:1::5 9100", "::ffff:127.0.0.1 8123", "::1 8123",
		"127.0.0.2 8080", "10.21.0.1 443", "fd00:2::1 9000", "::ffff:10.21.0.1 443"} {
		if err := g.Check(ap(addr)); err == nil {
			t.Errorf("%s allowed, want blocked", addr)
		}
	}
	if err := (Guard{}).Check(netip.AddrPort{}); err == nil {
		t.Error("the zero address is allowed")
	}
}

func TestBlockedErrorText(t *testing.T) {
	cases := map[string]string{
		"10.0.0.5 443":          "address 10.0.0.5 is in a private network (10.0.0.0/8): webhooks may not reach it; to allow it, add 10.0.0.5:443 to BOUNCER_WEBHOOK_ALLOW_NETS",
		"::1 8080":              "address ::1 is in the loopback address (::1/128): webhooks may not reach it; to allow it, add [::1]:8080 to BOUNCER_WEBHOOK_ALLOW_NETS",
		"169.254.169.254 80":    "address 169.254.169.254 is in the link-local network (where cloud metadata services live) (169.254.0.0/16): webhooks may not reach it; to allow it, add 169.254.169.254:80 to BOUNCER_WEBHOOK_ALLOW_NETS",
		"64:ff9b::a00:5 443":    "address 64:ff9b::a00:5 is the NAT64 form of 10.0.0.5, which is in a private network (10.0.0.0/8): webhooks may not reach it; to allow it, add 10.0.0.5:443 to BOUNCER_WEBHOOK_ALLOW_NETS",
		"::ffff:127.0.0.1 8080": "address ::ffff:127.0.0.1 is the IPv4-mapped form of 127.0.0.1, which is in the loopback network (127.0.0.0/8): webhooks may not reach it; to allow it, add 127.0.0.1:8080 to BOUNCER_WEBHOOK_ALLOW_NETS",
	}
	for addr, want := range cases {
		err := Guard{}.Check(ap(addr))
		if err == nil || err.Error() != want {
			t.Errorf("Check(%s):\n got %v\nwant %s", addr, err, want)
		}
		// Following the advice works.
		var be *BlockedError
		errors.As(err, &be)
		advice := strings.Fields(want)
		allow := advice[len(advice)-3]
		if err := (Guard{Allow: rules(t, allow)}).Check(ap(addr)); err != nil {
			t.Errorf("after allowing %s: %v", allow, err)
		}
	}
}

func TestControl(t *testing.T) {
	g := Guard{}
	if err := g.Control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("public address: %v", err)
	}
	if err := g.Control("tcp6", "[fe80::1%eth0]:443", nil); err == nil {
		t.Error("link-local with zone allowed")
	}
	if err := g.Control("tcp", "example.com:443", nil); err == nil {
		t.Error("unresolved name allowed")
	}
}

func TestParseAllowList(t *testing.T) {
	good := map[string]string{
		"":                                       "",
		"  ":                                     "",
		"127.0.0.1:8080,[::1]:8080":              "127.0.0.1:8080,[::1]:8080",
		"127.0.0.1/32:8080, [::1/128]:80":        "127.0.0.1:8080,[::1]:80",
		"127.0.0.1:9000-9099":                    "127.0.0.1:9000-9099",
		"10.20.0.0/16:443":                       "10.20.0.0/16:443",
		"[::ffff:127.0.0.1]:1-65535":             "[::ffff:127.0.0.1]:1-65535",
		" 192.168.0.0/16:443 , [fd00::/8]:8443 ": "192.168.0.0/16:443,[fd00::/8]:8443",
		"0.0.0.0/0:443":                          "0.0.0.0/0:443",
		"127.0.0.1:7-7":                          "127.0.0.1:7",
	}
	for in, want := range good {
		got, err := ParseAllowList(in)
		if err != nil {
			t.Errorf("ParseAllowList(%q): %v", in, err)
			continue
		}
		var s []string
		for _, r := range got {
			s = append(s, r.String())
		}
		if strings.Join(s, ",") != want {
			t.Errorf("ParseAllowList(%q) = %v, want %s", in, s, want)
		}
		// What String writes parses back to the same rules.
		again, err := ParseAllowList(strings.Join(s, ","))
		if err != nil || len(again) != len(got) {
			t.Errorf("ParseAllowList(%q) does not read its own output back: %v", strings.Join(s, ","), err)
		}
		for i := range again {
			if again[i] != got[i] {
				t.Errorf("round trip of %s gave %s", got[i], again[i])
			}
		}
	}
	bad := map[string]string{
		// The old form, without ports, is refused with the way to write it.
		"127.0.0.1/32":          `"127.0.0.1/32" names no port: an entry opens only the ports it names, so that a webhook URL cannot reach every service on an internal network; write 127.0.0.1:8080 for one port or 127.0.0.1:9000-9099 for a range`,
		"127.0.0.1":             `"127.0.0.1" names no port`,
		"10.0.0.0/8":            `write 10.0.0.0/8:8080 for one port`,
		"::1/128":               `write [::1]:8080 for one port`,
		"::1":                   `write [::1]:8080 for one port`,
		"[::1]":                 `"[::1]" names no port`,
		"127.0.0.1:8080,::1":    `"::1" names no port`,
		"[::1]8080":             `after ] comes :port`,
		"[::1:8080":             `opens a [ it does not close`,
		"[127.0.0.1]:80":        `square brackets are for IPv6 addresses`,
		"127.0.0.1:":            `port "" is not a number from 1 to 65535`,
		"127.0.0.1:0":           `port "0" is not a number from 1 to 65535`,
		"127.0.0.1:65536":       `port "65536" is not a number from 1 to 65535`,
		"127.0.0.1:http":        `port "http" is not a number from 1 to 65535`,
		"127.0.0.1:*":           `port "*" is not a number from 1 to 65535`,
		"127.0.0.1:-80":         `port "" is not a number from 1 to 65535`,
		"127.0.0.1:80-":         `port "" is not a number from 1 to 65535`,
		"127.0.0.1:+80":         `port "+80" is not a number`,
		"127.0.0.1:9099-9000":   `the port range 9099-9000 runs backwards; write the lower port first (9000-9099)`,
		"127.0.0.1:1-2-3":       `port "2-3" is not a number`,
		"10.0.0.300:80":         `"10.0.0.300" is not an IP address or CIDR prefix`,
		"localhost:8080":        `"localhost" is not an IP address or CIDR prefix`,
		"10.0.0.0/33:80":        `"10.0.0.0/33" is not a CIDR prefix`,
		"10.0.0.5/8:80":         `"10.0.0.5/8" has address bits set past the /8 prefix length; write 10.0.0.0/8 for the network or 10.0.0.5 for the one address`,
		"127.0.0.1:80,":         "entry 2 is empty",
		"[fe80::1%eth0]:80":     "has an IPv6 zone",
		"127.0.0.1:80;[::1]:80": `is not an entry: an IPv6 address goes in square brackets`,
		"::1:8080":              `"::1:8080" names no port`, // it is an IPv6 address
	}
	for in, want := range bad {
		_, err := ParseAllowList(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), EnvAllow+": ") {
			t.Errorf("ParseAllowList(%q) error = %v, want it to say %q", in, err, want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	g, err := FromEnv(func(k string) string {
		if k == EnvAllow {
			return "127.0.0.1:8080"
		}
		return ""
	})
	if err != nil || len(g.Allow) != 1 || g.Check(ap("127.0.0.1 8080")) != nil || g.Check(ap("127.0.0.1 8123")) == nil {
		t.Fatalf("FromEnv: %+v, %v", g, err)
	}
	if _, err := FromEnv(func(string) string { return "nope" }); err == nil {
		t.Fatal("bad allow-list accepted")
	}
}

func TestValidateURL(t *testing.T) {
	cases := []struct {
		url  string
		want string // "" means valid
	}{
		{"https://example.com/webhooks", ""},
		{"http://example.com", ""},
		{"HTTPS://Example.COM:8443/a/b?x=1&y=2", ""},
		{"https://hooks.example.com.:443/x", ""},
		{"https://8.8.8.8/hook", ""},
		{"https://[2606:4700::1111]:8443/hook", ""},
		{"https://my_host.example/hook", ""},
		{"http://localhost:8080/hook", ""}, // a name: checked when dialed
		{"", "the webhook URL is empty; give a URL like https://example.com/webhooks"},
		{"https://example.com/" + strings.Repeat("a", 2100), "the webhook URL is 2120 characters long; the limit is 2048"},
		{" https://example.com", "the webhook URL has spaces before or after it; remove them"},
		{"https://exa\tmple.com", "the webhook URL contains a control character; remove it"},
		{"ftp://example.com/", `the webhook URL must use https or http, not "ftp"`},
		{"example.com/hook", "the webhook URL must start with https:// or http://"},
		{"//example.com/hook", "the webhook URL must start with https:// or http://"},
		{"https:example.com", "the webhook URL must have the form https://host/path"},
		{"https://user:pass@example.com/", "the webhook URL must not contain a user name or password; requests are signed instead (see the signing settings)"},
		{"https://user@example.com/", "the webhook URL must not contain a user name or password; requests are signed instead (see the signing settings)"},
		{"https://example.com/#frag", "the webhook URL must not contain a fragment (the part from '#'); fragments are never sent to the server"},
		{"https://example.com/#", "the webhook URL must not contain a fragment (the part from '#'); fragments are never sent to the server"},
		{"https:///path", "the webhook URL has no host; give a URL like https://example.com/webhooks"},
		{"https://example.com:0/", `the webhook URL port "0" is not a number from 1 to 65535`},
		{"https://example.com:70000/", `the webhook URL port "70000" is not a number from 1 to 65535`},
		{"https://example.com:/", `the webhook URL port "" is not a number from 1 to 65535`},
		{"https://example.com:http/", `the webhook URL is not a valid URL: invalid port ":http" after host`},
		{"https://exa mple.com/", `the webhook URL is not a valid URL: invalid character " " in host name`},
		{"https://ex..ample.com/", `the webhook URL host "ex..ample.com" has an empty label (two dots in a row?)`},
		{"https://-bad.example/", `the webhook URL host "-bad.example" has a label starting or ending with '-'`},
		{"https://bücher.example/", `the webhook URL host "bücher.example" contains 'ü'; use letters, digits, '-' and '.' (write international names in their xn-- form)`},
		{"https://" + strings.Repeat("a", 64) + ".com/", `the webhook URL host "` + strings.Repeat("a", 64) + `.com" has a label longer than 63 characters`},
		{"http://127.1/", `the webhook URL host "127.1" looks like an IP address in a nonstandard form; write IPv4 addresses as four decimal numbers (like 192.0.2.10) or use a host name`},
		{"http://2130706433/", `the webhook URL host "2130706433" looks like an IP address in a nonstandard form`},
		{"http://0x7f.0x1/", `the webhook URL host "0x7f.0x1" looks like an IP address in a nonstandard form`},
		{"http://10.0.0.5/hook", "address 10.0.0.5 is in a private network (10.0.0.0/8): webhooks may not reach it; to allow it, add 10.0.0.5:80 to BOUNCER_WEBHOOK_ALLOW_NETS"},
		{"http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is in the link-local network (where cloud metadata services live) (169.254.0.0/16)"},
		{"http://[::1]:8080/", "address ::1 is in the loopback address (::1/128)"},
		{"http://[::ffff:10.0.0.5]/", "address ::ffff:10.0.0.5 is the IPv4-mapped form of 10.0.0.5, which is in a private network (10.0.0.0/8)"},
		{"http://[fe80::1%25eth0]/", "the webhook URL host must not carry an IPv6 zone (%...)"},
		{"http://[example.com]/", "the webhook URL host in square brackets is not a valid IPv6 address"},
		{"http://[10.0.0.1]/", "the webhook URL host in square brackets is not a valid IPv6 address"},
		{"http://0.0.0.0:8080/", "address 0.0.0.0 is in the \"this network\" block (0.0.0.0/8)"},
	}
	for _, tc := range cases {
		name := tc.url
		if len(name) > 60 {
			name = name[:60] + "..."
		}
		t.Run(name, func(t *testing.T) {
			err := Guard{}.ValidateURL(tc.url)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateURL(%q) = %v, want valid", tc.url, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("ValidateURL(%q)\n got %v\nwant %s", tc.url, err, tc.want)
			}
		})
	}
	// An allow-listed literal passes registration.
	g := Guard{Allow: rules(t, "127.0.0.1:9000, [::1]:80, 10.1.0.0/16:443")}
	for _, u := range []string{"http://127.0.0.1:9000/hook", "http://[::1]/hook", "https://10.1.2.3/hook", "http://10.1.2.3:443/"} {
		if err := g.ValidateURL(u); err != nil {
			t.Errorf("allowed literal %s: %v", u, err)
		}
	}
	// The port is checked at registration too (the scheme's port when the
	// URL names none).
	for _, u := range []string{"http://127.0.0.1:8123/?query=INSERT", "http://127.0.0.1/", "https://[::1]/", "http://10.1.2.3/", "https://10.1.2.3:8443/"} {
		if err := g.ValidateURL(u); err == nil || !strings.Contains(err.Error(), "webhooks may not reach it") {
			t.Errorf("%s: %v, want refused", u, err)
		}
	}
}

func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{"https://example.com/x", "http://[::1]/", "http://127.1", "https://a:b@c/#d", "http://[fe80::1%25x]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		err := Guard{}.ValidateURL(raw)
		if err != nil {
			return
		}
		// Anything accepted parses to http(s) with a host, and a literal
		// IP host accepted must pass Check.
		u, perr := parseForTest(raw)
		if perr != nil {
			t.Fatalf("accepted %q but url.Parse fails: %v", raw, perr)
		}
		if u.scheme != "http" && u.scheme != "https" || u.host == "" {
			t.Fatalf("accepted %q with scheme %q host %q", raw, u.scheme, u.host)
		}
		if ip, err := netip.ParseAddr(u.host); err == nil {
			if (Guard{}).Check(netip.AddrPortFrom(ip, 443)) != nil {
				t.Fatalf("accepted blocked literal %q", raw)
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	allow, err := ParseAllowList("127.0.0.1:8080")
	if err != nil {
		b.Fatal(err)
	}
	g := Guard{Allow: allow}
	addrs := []netip.AddrPort{ap("8.8.8.8"), ap("2606:4700::1111"), ap("2002:808:808::1")}
	for b.Loop() {
		for _, a := range addrs {
			_ = g.Check(a)
		}
	}
}

// Every range in the tables blocks its own first and last address, so a
// typo in a table entry cannot silently open a range.
func TestEveryRangeBlocksItsEnds(t *testing.T) {
	for _, rg := range append(append([]Range(nil), Ranges4...), Ranges6...) {
		if rg.embedded != nil {
			continue // judged by the embedded address, covered in TestCheckRanges
		}
		first := rg.Prefix.Masked().Addr()
		last := lastAddr(rg.Prefix)
		for _, a := range []netip.Addr{first, last} {
			if err := (Guard{}).Check(netip.AddrPortFrom(a, 443)); err == nil {
				t.Errorf("%s (%s) lets %s through", rg.Prefix, rg.Name, a)
			}
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
