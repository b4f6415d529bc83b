package consumer

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/procstat"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/suppression"
)

// BenchmarkChangeLogSlices: the memory a worker's suppression index takes
// and the time to load one partition's slice, with BOUNCER_BENCH_ADDRESSES
// suppressed addresses (default 1,000,000; the figure is
// 10,000,000) on a change log of 8 partitions, for 1, 2 and 4 workers: a
// worker of W holds the slices of 8/W partitions (consumer.PartitionOf).
// The change log is written once (BOUNCER_BENCH_CHANGELOG names an
// existing one to reuse). Run:
//
//	go test -run '^$' -bench ChangeLogSlices -benchtime 1x -timeout 60m ./consumer/
//
// Reported per worker count: index-B/addr (Go heap after GC, per address
// loaded), index-MB and rss-MB (the process's resident set grew by this
// while loading), s/partition (load time of one slice).
func BenchmarkChangeLogSlices(b *testing.B) {
	conn := Conn{Brokers: testenv.Brokers(testenv.Kafka(b))}
	addresses := 1_000_000
	if v := os.Getenv("BOUNCER_BENCH_ADDRESSES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 8 {
			b.Fatalf("BOUNCER_BENCH_ADDRESSES=%q: want a number of at least 8", v)
		}
		addresses = n
	}
	const partitions = 8
	ctx := context.Background()
	topic := os.Getenv("BOUNCER_BENCH_CHANGELOG")
	if topic == "" {
		topic = fmt.Sprintf("bench.changelog.%d.%d", addresses, time.Now().UnixNano())
		start := time.Now()
		writeChanges(b, ctx, conn, topic, partitions, addresses)
		b.Logf("wrote %d changes to %s in %s", addresses, topic, time.Since(start).Round(time.Millisecond))
	}
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				debug.FreeOSMemory()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				rss0, err := procstat.ReadMemory(os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				index := suppression.New()
				start := time.Now()
				loaded := 0
				for p := range partitions / workers {
					n, err := LoadSlice(ctx, conn, topic, p, index.Apply)
					if err != nil {
						b.Fatal(err)
					}
					loaded += n
				}
				took := time.Since(start)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				rss1, err := procstat.ReadMemory(os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				if index.Len() != loaded {
					b.Fatalf("index holds %d entries, loaded %d changes", index.Len(), loaded)
				}
				heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				b.ReportMetric(heap/float64(loaded), "index-B/addr")
				b.ReportMetric(heap/(1<<20), "index-MB")
				b.ReportMetric(float64(rss1.RSS-rss0.RSS)/(1<<20), "rss-MB")
				b.ReportMetric(took.Seconds()/float64(partitions/workers), "s/partition")
				b.ReportMetric(float64(loaded), "addresses")
				runtime.KeepAlive(index)
			}
		})
	}
}

// writeChanges puts n bounces of distinct addresses (two accounts) on a
// new change log.
func writeChanges(b *testing.B, ctx context.Context, conn Conn, topic string, partitions, n int) {
	w, err := OpenChangeLog(ctx, conn, topic, partitions)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	at := time.Unix(1764201600, 0)
	batch := make([]suppression.Change, 0, 20000)
	for i := range n {
		batch = append(batch, suppression.Change{
			AccountID: "acct" + strconv.Itoa(i%2), List: suppression.ListBounces,
			EmailNorm: "user" + strconv.Itoa(i) + "@example" + strconv.Itoa(i%1000) + ".com", Email: "User" + strconv.Itoa(i) + "@example.com",
			At: at.Add(time.Duration(i) * time.Millisecond), Reason: "550 5.1.1 user unknown", Status: "5.1.1",
			Classification: "Invalid Address", ReasonCode: "user_unknown", Source: "event:x" + strconv.Itoa(i),
			Src: suppression.Position{Topic: "events", Partition: i % partitions, Offset: int64(i)},
		})
		if len(batch) == cap(batch) || i == n-1 {
			if err := w.PublishChanges(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
