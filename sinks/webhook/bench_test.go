package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/kafkatier"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// The webhook benchmarks run the webhook group on real Kafka against
// loopback receivers and report figures; they assert nothing. Run:
//
//	go test -run '^$' -bench Webhook -benchtime 1x ./sinks/webhook/
//
// BenchmarkWebhookThroughput: 200,000 events already in Kafka (arrays of
// ten per message, 20 accounts with one endpoint each), delivered as fast
// as they go: events/s and requests/s from the moment the group joined
// to the last 2xx.
// BenchmarkWebhookLatency: events produced at a steady 5,000/s (or
// BOUNCER_BENCH_RATE) for 15 s,
// each carrying its send time; latency is from produce to the receiver's
// 2xx, over all events and over those produced after the first 5 s.
// "hanging" makes 2 of 20 endpoints never answer (past the 2 s attempt
// timeout) and reports the healthy endpoints only.

// benchRate is the steady rate of BenchmarkWebhookLatency: events per
// second from BOUNCER_BENCH_RATE, default 5000.
func benchRate() int {
	if n, err := strconv.Atoi(os.Getenv("BOUNCER_BENCH_RATE")); err == nil && n >= 500 {
		return n
	}
	return 5000
}

type benchReceiver struct {
	hang     bool
	first    *atomic.Int64 // unix ns of the first and last 2xx of all receivers
	last     *atomic.Int64
	events   atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	sent     []int64 // unix ns each event was produced, beside lat
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.hang {
		<-req.Context().Done()
		return
	}
	body, _ := io.ReadAll(req.Body)
	now := time.Now()
	var evs []struct {
		Sent int64 `json:"sent_ns"`
	}
	json.Unmarshal(body, &evs)
	r.requests.Add(1)
	r.events.Add(int64(len(evs)))
	r.first.CompareAndSwap(0, now.UnixNano())
	r.last.Store(now.UnixNano())
	r.mu.Lock()
	for _, e := range evs {
		if e.Sent > 0 {
			r.lat = append(r.lat, now.Sub(time.Unix(0, e.Sent)))
			r.sent = append(r.sent, e.Sent)
		}
	}
	r.mu.Unlock()
}

type benchEnv struct {
	first, last atomic.Int64
	topic       string
	conn        consumer.Conn
	recvs       []*benchReceiver
	stop        func()
	ready       func(context.Context) error // nil once the group joined and the subscriptions were read
}

// startBench starts receivers and the webhook group; preload events are
// in Kafka before the group starts.
func startBench(b *testing.B, endpoints, hanging, preload int) *benchEnv {
	brokers := testenv.Kafka(b)
	topic := testenv.Topic(b, brokers, 4)
	conn := consumer.Conn{Brokers: testenv.Brokers(brokers)}
	reg := &memRegistry{}
	env := &benchEnv{topic: topic, conn: conn}
	var guard safedial.Guard // opens exactly the receivers' ports
	for i := range endpoints {
		rc := &benchReceiver{hang: i < hanging, first: &env.first, last: &env.last}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: rc}
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
		guard.Allow = append(guard.Allow, safedial.RuleFor(netip.MustParseAddrPort(ln.Addr().String())))
		env.recvs = append(env.recvs, rc)
		reg.eps = append(reg.eps, subscription.Webhook{ID: fmt.Sprintf("ep%02d", i), AccountID: fmt.Sprintf("acct%02d", i),
			URL: "http://" + ln.Addr().String() + "/", Enabled: true, Events: map[string]bool{"delivered": true},
			Secrets: []sign.Secret{{Key: []byte("0123456789abcdef0123456789abcdef")}}})
	}
	if preload > 0 {
		env.produce(b, preload, 0)
	}
	topics := kafkatier.Topics{Prefix: topic + ".wh", Delays: []time.Duration{5 * time.Second, time.Minute}}
	deleteTopics(b, brokers, topics.All())
	// The worker's own wiring and order of stopping (kafkatier.Delivery).
	d, err := kafkatier.NewDelivery(context.Background(), kafkatier.DeliveryConfig{
		Conn: conn, Topic: topic, Group: topic + ".webhooks", Topics: topics, Partitions: 4,
		Dispatcher: webhook.Config{Registry: reg, Client: guard.Client(2 * time.Second), AttemptTimeout: 2 * time.Second,
			Schedule: webhook.Schedule{Delays: topics.Delays}},
		DeliveryLog: &memLog{}, Failed: &memFailed{}, MaxBatchMessages: 20000, MaxWait: 200 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { defer close(ran); d.Run(context.Background()) }()
	env.ready = d.Ready
	env.stop = func() {
		if err := d.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
		<-ran
	}
	return env
}

// produce writes n events, ten per message, spread over the accounts of
// the endpoints; with perSecond > 0 at that steady rate.
func (e *benchEnv) produce(b *testing.B, n, perSecond int) {
	// Its own transport, as in the tests: with kafka-go's shared default
	// one, the first writes to a new topic sometimes failed with "Unknown
	// Topic Or Partition" after an earlier benchmark's topics were deleted.
	w, err := consumer.NewWriter(consumer.Conn{Brokers: e.conn.Brokers}, e.topic, consumer.WriterConfig{BatchTimeout: time.Millisecond, BatchSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	const per = 10
	msg := func(i int) kafka.Message {
		buf := []byte{'['}
		now := time.Now().UnixNano()
		for k := range per {
			if k > 0 {
				buf = append(buf, ',')
			}
			buf = fmt.Appendf(buf, `{"event":"delivered","email":"u%d@example.com","timestamp":%d,"sg_event_id":"e%d-%d","account_id":"acct%02d","sent_ns":%d,"response":"250 2.0.0 OK"}`,
				i, time.Now().Unix(), i, k, i%len(e.recvs), now)
		}
		return kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: append(buf, ']')}
	}
	ctx := context.Background()
	if perSecond <= 0 {
		var msgs []kafka.Message
		for i := range n / per {
			msgs = append(msgs, msg(i))
			if len(msgs) == 2000 {
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					b.Fatal(err)
				}
				msgs = msgs[:0]
			}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	perTick := perSecond / 50 / per
	for i := 0; i < n/per; {
		<-tick.C
		var msgs []kafka.Message
		for range perTick {
			msgs = append(msgs, msg(i))
			i++
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
}

func (e *benchEnv) delivered(healthyOnly bool) (events, requests int64) {
	for _, r := range e.recvs {
		if healthyOnly && r.hang {
			continue
		}
		events += r.events.Load()
		requests += r.requests.Load()
	}
	return
}

func BenchmarkWebhookThroughput(b *testing.B) {
	const n = 200_000
	for range b.N {
		env := startBench(b, 20, 0, n)
		for env.ready(context.Background()) != nil {
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		deadline := start.Add(5 * time.Minute)
		for time.Now().Before(deadline) {
			if ev, _ := env.delivered(false); ev >= n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		took := time.Unix(0, env.last.Load()).Sub(start)
		ev, req := env.delivered(false)
		env.stop()
		b.ReportMetric(float64(ev)/took.Seconds(), "events/s")
		b.ReportMetric(float64(req)/took.Seconds(), "requests/s")
		b.ReportMetric(float64(ev)/float64(max(req, 1)), "events/request")
	}
}

func BenchmarkWebhookLatency(b *testing.B) {
	for _, c := range []struct {
		name    string
		hanging int
	}{{"healthy", 0}, {"hanging", 2}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				rate, secs := benchRate(), 15
				env := startBench(b, 20, c.hanging, 0)
				time.Sleep(3 * time.Second) // the group joins
				began := time.Now()
				env.produce(b, rate*secs, rate)
				want := int64(rate * secs * (20 - c.hanging) / 20)
				deadline := time.Now().Add(time.Minute)
				for time.Now().Before(deadline) {
					if ev, _ := env.delivered(true); ev >= want {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				env.stop()
				// All events, and those produced after the first 5 s (once
				// the hanging endpoints' circuits are open).
				var lat, steady []time.Duration
				warm := began.Add(5 * time.Second).UnixNano()
				for _, r := range env.recvs {
					if r.hang {
						continue
					}
					lat = append(lat, r.lat...)
					for i, l := range r.lat {
						if r.sent[i] >= warm {
							steady = append(steady, l)
						}
					}
				}
				if len(lat) == 0 || len(steady) == 0 {
					b.Fatal("nothing delivered")
				}
				slices.Sort(lat)
				slices.Sort(steady)
				q := func(l []time.Duration, p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Milliseconds()) }
				b.ReportMetric(q(lat, 0.5), "p50_ms")
				b.ReportMetric(q(lat, 0.99), "p99_ms")
				b.ReportMetric(q(steady, 0.5), "p50_after5s_ms")
				b.ReportMetric(q(steady, 0.99), "p99_after5s_ms")
				b.ReportMetric(float64(len(lat))/float64(want), "delivered_ratio")
			}
		})
	}
}
