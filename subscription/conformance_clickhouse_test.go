package subscription_test

import (
	"testing"

	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/subscription/storetest"
)

// TestStoreConformance: the Service over ClickHouse (what the API uses)
// keeps the subscription store contract the API tests' fake is held to
// (subscription/storetest; api's TestFakeWebhooksConformance runs it on
// the fake). One database, an account per test.
func TestStoreConformance(t *testing.T) {
	addr := testenv.ClickHouse(t)
	st := apitest.Store(t, clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(t, addr)})
	keys, err := secrets.ParseKeyring(secrets.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	svc := subscription.NewService(st, keys, safedial.Guard{}, nil)
	storetest.Run(t, func(*testing.T) storetest.Store { return svc })
}
