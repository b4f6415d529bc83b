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
	fmt.Println(guard.Check(netip.MustParseAddr("64:ff9b::a9fe:a9fe")))
	// Output:
	// <nil>
	// address 10.0.0.5 is in a private network (10.0.0.0/8): webhooks may not reach it; to allow it, add 10.0.0.5/32 to BOUNCER_WEBHOOK_ALLOW_NETS
	// address 64:ff9b::a9fe:a9fe is the NAT64 form of 169.254.169.254, which is in the link-local network (where cloud metadata services live) (169.254.0.0/16): webhooks may not reach it; to allow it, add 169.254.169.254/32 to BOUNCER_WEBHOOK_ALLOW_NETS
}
