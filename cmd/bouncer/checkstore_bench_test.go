package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

// BenchmarkCheckBackends compares the two places the batch check could
// answer from, below HTTP (BenchmarkCheckLoad measures the HTTP path of
// the first): the API process's full in-memory copy (suppression.Index) and
// ClickHouse point lookups on the suppressions table (one query per
// request: the newest change of each of the request's addresses'
// memberships). Both hold 1,000,000 addresses of one account on the bounce
// list (inserted with one INSERT ... SELECT FROM numbers, migrations
// applied); each request asks for 100 recipients, half of them suppressed;
// 1, 8 and 32 concurrent clients. Run:
//
//	go test -run '^$' -bench CheckBackends -benchtime 200x ./cmd/bouncer/
func BenchmarkCheckBackends(b *testing.B) {
	addr := testenv.ClickHouse(b)
	db := testenv.Database(b, addr)
	ctx := context.Background()
	if _, err := clickhouse.Migrate(ctx, clickhouse.Config{Addr: []string{addr}, Database: db}); err != nil {
		b.Fatal(err)
	}
	// A connection per client (the pool's default is smaller than 32).
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}, Auth: ch.Auth{Database: db}, MaxOpenConns: 40, MaxIdleConns: 40})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const addresses = 1_000_000
	start := time.Now()
	if err := conn.Exec(ctx, "INSERT INTO suppressions (account_id, list, group_id, email_norm, email, created, reason, status, "+
		"bounce_classification, reason_code, deleted, version, source) "+
		"SELECT 'acme', 'bounces', 0, concat('user', toString(number), '@example.com'), concat('User', toString(number), '@example.com'), "+
		"toDateTime(1764201600), '550 5.1.1 user unknown', '5.1.1', 'Invalid Address', 'user_unknown', 0, 3528403200, 'bench' "+
		"FROM system.numbers LIMIT "+strconv.Itoa(addresses)); err != nil {
		b.Fatal(err)
	}
	conn.Exec(ctx, "OPTIMIZE TABLE suppressions FINAL")
	b.Logf("stored %d suppressions in %s", addresses, time.Since(start).Round(time.Millisecond))
	ix := suppression.New()
	at := time.Unix(1764201600, 0)
	for i := range addresses {
		ix.Apply(suppression.Change{AccountID: "acme", List: suppression.ListBounces, EmailNorm: "user" + strconv.Itoa(i) + "@example.com",
			At: at, ReasonCode: "user_unknown"})
	}
	requests := make([][]string, 64)
	k := 0
	for i := range requests {
		for j := range 100 {
			if j%2 == 0 {
				requests[i] = append(requests[i], "user"+strconv.Itoa((k*7919)%addresses)+"@example.com")
			} else {
				requests[i] = append(requests[i], "someone"+strconv.Itoa(k)+"@elsewhere.org")
			}
			k++
		}
	}
	const query = "SELECT email_norm, list, group_id, argMax(deleted, version) AS del, argMax(reason_code, version) AS why " +
		"FROM suppressions WHERE account_id = ? AND email_norm IN ? GROUP BY email_norm, list, group_id HAVING del = 0"
	// The same, with the key's columns before email_norm fixed (the global
	// lists, group 0), so the primary key can narrow the read to the
	// addresses' granules; group unsubscribes would need a second query.
	const keyed = "SELECT email_norm, list, group_id, argMax(deleted, version) AS del, argMax(reason_code, version) AS why " +
		"FROM suppressions WHERE account_id = ? AND list IN ('bounces', 'spam_reports', 'invalid_emails', 'unsubscribes') AND group_id = 0 " +
		"AND email_norm IN ? GROUP BY email_norm, list, group_id HAVING del = 0"
	lookup := func(query string) func(ctx context.Context, emails []string) (int, error) {
		return func(ctx context.Context, emails []string) (int, error) {
			set := make([]any, len(emails))
			for i, e := range emails {
				set[i] = e
			}
			rows, err := conn.Query(ctx, query, "acme", ch.GroupSet{Value: set})
			if err != nil {
				return 0, err
			}
			defer rows.Close()
			dropped := map[string]bool{}
			for rows.Next() {
				var email, list, why string
				var group int64
				var del uint8
				if err := rows.Scan(&email, &list, &group, &del, &why); err != nil {
					return 0, err
				}
				// The drop rule of suppression.Index.DropReasonAt.
				if list == suppression.ListBounces || list == suppression.ListSpamReports || list == suppression.ListInvalidEmails ||
					list == suppression.ListUnsubscribes && group == 0 {
					dropped[email] = true
				}
			}
			return len(dropped), rows.Err()
		}
	}
	backends := []struct {
		name  string
		check func(ctx context.Context, emails []string) (int, error)
	}{
		{"memory", func(_ context.Context, emails []string) (int, error) {
			n := 0
			for _, e := range emails {
				ix.Lookup("acme", e)
				if ix.DropReason("acme", e, 0, math.MaxUint32) != "" {
					n++
				}
			}
			return n, nil
		}},
		{"clickhouse", lookup(query)},
		{"clickhouse-keyed", lookup(keyed)},
	}
	for _, be := range backends {
		if n, err := be.check(ctx, requests[0]); err != nil || n != 50 {
			b.Fatalf("%s: %d of 100 suppressed (%v), want 50", be.name, n, err)
		}
		for _, clients := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/clients=%d", be.name, clients), func(b *testing.B) {
				latencies := make([]time.Duration, b.N)
				var mu sync.Mutex
				next, failed := 0, 0
				var firstErr error
				var wg sync.WaitGroup
				b.ResetTimer()
				t0 := time.Now()
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							mu.Lock()
							i := next
							next++
							mu.Unlock()
							if i >= b.N {
								return
							}
							s := time.Now()
							if n, err := be.check(ctx, requests[i%len(requests)]); err != nil || n != 50 {
								mu.Lock()
								failed++
								if firstErr == nil {
									firstErr = fmt.Errorf("%d of 100 suppressed, err %v", n, err)
								}
								mu.Unlock()
							}
							latencies[i] = time.Since(s)
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(t0)
				b.StopTimer()
				if failed > 0 {
					b.Fatalf("%d of %d requests failed or were wrong; the first: %v", failed, b.N, firstErr)
				}
				slices.Sort(latencies)
				pct := func(p float64) float64 {
					return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "requests/s")
				b.ReportMetric(pct(0.50), "p50-ms")
				b.ReportMetric(pct(0.99), "p99-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
