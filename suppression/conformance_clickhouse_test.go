package suppression_test

import (
	"testing"

	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
	"github.com/bouncer-mail/bouncer/suppression/liststest"
)

// TestListsConformance: the Service over ClickHouse (what the API uses)
// keeps the list contract the API tests' in-memory store is held to
// (suppression/liststest; api's TestMemListConformance runs it on the
// fake). One database, an account per test.
func TestListsConformance(t *testing.T) {
	addr := testenv.ClickHouse(t)
	st := apitest.Store(t, clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(t, addr)})
	svc := suppression.NewService(st, nil, nil)
	liststest.Run(t, func(*testing.T) liststest.Store { return svc })
}
