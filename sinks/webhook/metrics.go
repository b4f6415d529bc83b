package webhook

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bouncer-mail/bouncer/subscription"
)

// Result classes of an attempt or a parking, as the delivery log and the
// metrics name them.
const (
	ResultOK         = "ok"
	ResultHTTPError  = "http_error"
	ResultTimeout    = "timeout"
	ResultConnection = "connection"
	// ResultOAuth: no access token for an endpoint that uses OAuth (the
	// token request failed); the batch was not sent and is retried.
	ResultOAuth     = "oauth"
	ResultGone      = "gone"
	ResultParked    = "parked"
	ResultExhausted = "exhausted"
)

// Metrics of webhook delivery. Per-endpoint figures are aggregated (the
// node's total and its largest queue) to keep label cardinality fixed.
type Metrics struct {
	deliveries   *prometheus.CounterVec
	attempt      prometheus.Histogram
	endToEnd     prometheus.Histogram
	events       prometheus.Counter
	badInput     *prometheus.CounterVec
	queued       prometheus.Gauge
	largestQueue prometheus.Gauge
	circuits     *prometheus.GaugeVec
	disabled     *prometheus.CounterVec
	tierLag      *prometheus.GaugeVec
	logDropped   prometheus.Counter
	parkErrors   prometheus.Counter
	endpoints    *prometheus.GaugeVec
	parked       *parkedHeads
}

// NewMetrics creates the metrics, registered with reg unless nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_webhook_deliveries_total", Help: "Delivery attempts and parkings of batches, by result (ok, http_error, timeout, connection, oauth, gone, parked, exhausted).",
		}, []string{"result"}),
		attempt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bouncer_webhook_attempt_seconds", Help: "Duration of one POST to an endpoint.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bouncer_webhook_end_to_end_seconds", Help: "From an event's timestamp (whole seconds) to the 2xx of the batch that carried it.",
			Buckets: []float64{1, 2, 3, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400, 259200},
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_webhook_events_delivered_total", Help: "Events in batches an endpoint answered with 2xx (a retried event counts again).",
		}),
		badInput: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_webhook_bad_input_total", Help: "Rejected messages or elements the webhook group skipped (the sink group dead-letters them), by reason.",
		}, []string{"code"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_webhook_queued_events", Help: "Events waiting in this node's endpoint queues.",
		}),
		largestQueue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_webhook_largest_queue_events", Help: "Events waiting in this node's fullest endpoint queue.",
		}),
		circuits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_webhook_circuits", Help: "Endpoints of this node by circuit-breaker state.",
		}, []string{"state"}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_webhook_endpoints_disabled_total", Help: "Endpoints delivery disabled, by reason (gone, failing).",
		}, []string{"reason"}),
		tierLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_webhook_retry_tier_lag", Help: "Batches waiting in a retry tier topic (behind the high-water mark of the partitions this node owns), as of the last message read.",
		}, []string{"tier"}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_webhook_log_dropped_total", Help: "Delivery log rows dropped because the buffer was full or ClickHouse failed.",
		}),
		parkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_webhook_park_errors_total", Help: "Failed attempts to write batches to a retry tier or the dead letters (the source is redelivered).",
		}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bouncer_webhook_endpoints", Help: "Webhook subscriptions as of the last read, by state: active, off (the customer's switch), disabled (by delivery: gone or failing).",
		}, []string{"state"}),
		parked: newParkedHeads(time.Now),
	}
	for _, r := range []string{ResultOK, ResultHTTPError, ResultTimeout, ResultConnection, ResultGone, ResultParked, ResultExhausted} {
		m.deliveries.WithLabelValues(r)
	}
	for _, s := range []string{EndpointActive, EndpointOff, EndpointDisabled} {
		m.endpoints.WithLabelValues(s)
	}
	for _, r := range []string{"gone", "failing"} {
		m.disabled.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempt, m.endToEnd, m.events, m.badInput, m.queued, m.largestQueue,
			m.circuits, m.disabled, m.tierLag, m.logDropped, m.parkErrors, m.endpoints, m.parked)
	}
	return m
}

// TierLag records the batches waiting in a retry tier.
func (m *Metrics) TierLag(tier string, n int64) { m.tierLag.WithLabelValues(tier).Set(float64(n)) }

// States of a subscription (bouncer_webhook_endpoints{state}).
const (
	EndpointActive   = "active"
	EndpointOff      = "off"
	EndpointDisabled = "disabled"
)

// countEndpoints sets the subscription gauge.
func (m *Metrics) countEndpoints(eps []subscription.Webhook) {
	n := map[string]int{}
	for i := range eps {
		switch {
		case !eps[i].DisabledAt.IsZero():
			n[EndpointDisabled]++
		case !eps[i].Enabled:
			n[EndpointOff]++
		default:
			n[EndpointActive]++
		}
	}
	for _, s := range []string{EndpointActive, EndpointOff, EndpointDisabled} {
		m.endpoints.WithLabelValues(s).Set(float64(n[s]))
	}
}

// ParkedHead records the batch a retry tier's consumer waits on in one
// partition (the oldest there): parked is when it was written to the tier
// (its Kafka timestamp), due when it may be sent.
func (m *Metrics) ParkedHead(tier string, partition int, parked, due time.Time) {
	m.parked.set(tierPartition{tier, partition}, parkedHead{parked: parked, due: due})
}

// ParkedNone records that a tier's partition holds nothing this node waits
// on (its figures read 0).
func (m *Metrics) ParkedNone(tier string, partition int) {
	m.parked.set(tierPartition{tier, partition}, parkedHead{})
}

// ParkedGone forgets a partition this node no longer consumes.
func (m *Metrics) ParkedGone(tier string, partition int) {
	m.parked.mu.Lock()
	defer m.parked.mu.Unlock()
	delete(m.parked.heads, tierPartition{tier, partition})
}

type tierPartition struct {
	tier      string
	partition int
}

type parkedHead struct{ parked, due time.Time }

// parkedHeads is a collector: the ages are computed when scraped, so they
// grow while a consumer is stuck and nothing updates them.
type parkedHeads struct {
	now     func() time.Time
	age     *prometheus.Desc
	overdue *prometheus.Desc

	mu    sync.Mutex
	heads map[tierPartition]parkedHead
}

func newParkedHeads(now func() time.Time) *parkedHeads {
	return &parkedHeads{
		now: now,
		age: prometheus.NewDesc("bouncer_webhook_parked_oldest_age_seconds",
			"Age of the oldest batch this node's consumer of a retry tier holds (since it was parked in the tier); 0 when none.", []string{"tier"}, nil),
		overdue: prometheus.NewDesc("bouncer_webhook_parked_overdue_seconds",
			"How far past its due time the oldest batch this node's consumer of a retry tier holds is; 0 when none is due.", []string{"tier"}, nil),
		heads: map[tierPartition]parkedHead{},
	}
}

func (p *parkedHeads) set(k tierPartition, h parkedHead) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.heads[k] = h
}

func (p *parkedHeads) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.age
	ch <- p.overdue
}

func (p *parkedHeads) Collect(ch chan<- prometheus.Metric) {
	now := p.now()
	age, overdue := map[string]float64{}, map[string]float64{}
	p.mu.Lock()
	for k, h := range p.heads {
		a, o := 0.0, 0.0
		if !h.parked.IsZero() {
			a = max(now.Sub(h.parked).Seconds(), 0)
		}
		if !h.due.IsZero() {
			o = max(now.Sub(h.due).Seconds(), 0)
		}
		age[k.tier] = max(age[k.tier], a)
		overdue[k.tier] = max(overdue[k.tier], o)
	}
	p.mu.Unlock()
	for tier, v := range age {
		ch <- prometheus.MustNewConstMetric(p.age, prometheus.GaugeValue, v, tier)
		ch <- prometheus.MustNewConstMetric(p.overdue, prometheus.GaugeValue, overdue[tier], tier)
	}
}
