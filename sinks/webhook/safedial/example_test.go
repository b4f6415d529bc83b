package safedial_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
)

func Example() {
	// In production: guard, err := safedial.FromEnv(os.Getenv), which reads
	// BOUNCER_WEBHOOK_ALLOW_NETS; unset, it is the zero Guard below.
	guard := safedial.Guard{}
	client := guard.Client(15 * time.Second) // never follows redirects, never uses a proxy
	_ = client

	fmt.Println(guard.ValidateURL("https://hooks.example.com/bouncer"))
	fmt.Println(guard.ValidateURL("http://10.0.0.5/hook"))
	fmt.Println(guard.Check(netip.MustParseAddrPort("[64:ff9b::a9fe:a9fe]:80")))
	// Output:
	// <nil>
	// address 10.0.0.5 is in a private network (10.0.0.0/8): webhooks may not reach it; to allow it, add 10.0.0.5:80 to BOUNCER_WEBHOOK_ALLOW_NETS
	// address 64:ff9b::a9fe:a9fe is the NAT64 form of 169.254.169.254, which is in the link-local network (where cloud metadata services live) (169.254.0.0/16): webhooks may not reach it; to allow it, add 169.254.169.254:80 to BOUNCER_WEBHOOK_ALLOW_NETS
}

// An allow-list opens chosen ports of internal networks, never whole
// networks: an entry without a port is refused.
func ExampleParseAllowList() {
	rules, err := safedial.ParseAllowList("127.0.0.1:8080, 10.20.0.0/16:9000-9099, [::1]:8080")
	fmt.Println(rules, err)
	guard := safedial.Guard{Allow: rules}
	fmt.Println(guard.Check(netip.MustParseAddrPort("127.0.0.1:8080")))
	fmt.Println(guard.Check(netip.MustParseAddrPort("127.0.0.1:8123")) != nil)

	_, err = safedial.ParseAllowList("127.0.0.1/32")
	fmt.Println(err)
	// Output:
	// [127.0.0.1:8080 10.20.0.0/16:9000-9099 [::1]:8080] <nil>
	// <nil>
	// true
	// BOUNCER_WEBHOOK_ALLOW_NETS: "127.0.0.1/32" names no port: an entry opens only the ports it names, so that a webhook URL cannot reach every service on an internal network; write 127.0.0.1:8080 for one port or 127.0.0.1:9000-9099 for a range (the ports your receivers listen on)
}
