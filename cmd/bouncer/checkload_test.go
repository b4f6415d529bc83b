package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/suppression"
)

// BenchmarkCheckLoad is a bounded loopback load test of the batch check
// (POST /bouncer/v1/suppressions/check): the API handler and in-memory
// checker as `bouncer api` builds them (api.NewServer, indexChecker, the
// same http.Server timeouts) on a 127.0.0.1 listener, its index holding one
// million suppressed addresses; C concurrent clients send b.N requests of 100
// recipients each (half of them suppressed) over keep-alive connections.
// Keys come from memory and the index is filled directly instead of from
// ClickHouse and the change log, so the figures are the HTTP and lookup
// path only. Run a fixed number of requests with:
//
//	go test -run '^$' -bench CheckLoad -benchtime 20000x ./cmd/bouncer/
func BenchmarkCheckLoad(b *testing.B) {
	base, key := checkLoadServer(b)
	bodies := checkBodies(64)
	// The answers are right: 50 of the 100 recipients are suppressed.
	req, _ := http.NewRequest("POST", base+"/bouncer/v1/suppressions/check", bytes.NewReader(bodies[0]))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	first, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := bytes.Count(first, []byte(`"drop_reason":"Bounced Address"`)); resp.StatusCode != 200 || n != 50 {
		b.Fatalf("check: %d, %d suppressed of 100, want 50: %.300s", resp.StatusCode, n, first)
	}
	for _, clients := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			latencies := make([]time.Duration, b.N)
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1) - 1)
						if i >= b.N {
							return
						}
						t0 := time.Now()
						req, _ := http.NewRequest("POST", base+"/bouncer/v1/suppressions/check", bytes.NewReader(bodies[i%len(bodies)]))
						req.Header.Set("Authorization", "Bearer "+key)
						req.Header.Set("Content-Type", "application/json")
						resp, err := client.Do(req)
						if err != nil {
							failed.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Add(1)
						}
						latencies[i] = time.Since(t0)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d requests failed", n, b.N)
			}
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "requests/s")
			b.ReportMetric(float64(b.N)*100/elapsed.Seconds(), "recipients/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op") // per-request time is in the figures above
		})
	}
}

// checkLoadServer starts the API on loopback with a million suppressed
// addresses of account acme and returns its base URL and a key.
func checkLoadServer(b *testing.B) (string, string) {
	b.Helper()
	ix := suppression.New()
	at := time.Unix(1764201600, 0)
	for i := 0; i < 1_000_000; i++ {
		ix.Apply(suppression.Change{AccountID: "acme", List: suppression.ListBounces, EmailNorm: "user" + strconv.Itoa(i) + "@example.com",
			At: at, ReasonCode: "user_unknown"})
	}
	token, id, hash, err := accounts.NewKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	keys := memKeys{{AccountID: "acme", KeyID: id, Hash: hash}}
	h := api.NewServer(api.Config{Store: api.ListStore{}, Keys: keys, Checker: ix, RateLimit: 1e9})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String(), token
}

type memKeys []accounts.Key

func (m memKeys) APIKeys(context.Context, string) ([]accounts.Key, error) { return m, nil }

// checkBodies makes n request bodies of 100 recipients, every other one
// on the bounce list.
func checkBodies(n int) [][]byte {
	out := make([][]byte, n)
	k := 0
	for i := range out {
		var buf bytes.Buffer
		buf.WriteString(`{"emails":[`)
		for j := 0; j < 100; j++ {
			if j > 0 {
				buf.WriteByte(',')
			}
			if j%2 == 0 {
				fmt.Fprintf(&buf, `"User%d@Example.com"`, (k*7919)%1_000_000)
			} else {
				fmt.Fprintf(&buf, `"someone%d@elsewhere.org"`, k)
			}
			k++
		}
		buf.WriteString(`]}`)
		out[i] = buf.Bytes()
	}
	return out
}
