package webhook

import "github.com/prometheus/client_golang/prometheus"

// Result classes of an attempt or a parking, as the delivery log and the
// metrics name them.
const (
	ResultOK         = "ok"
	ResultHTTPError  = "http_error"
	ResultTimeout    = "timeout"
	ResultConnection = "connection"
	ResultGone       = "gone"
	ResultParked     = "parked"
	ResultExhausted  = "exhausted"
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
}

// NewMetrics creates the metrics, registered with reg unless nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_webhook_deliveries_total", Help: "Delivery attempts and parkings of batches, by result (ok, http_error, timeout, connection, gone, parked, exhausted).",
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
	}
	for _, r := range []string{ResultOK, ResultHTTPError, ResultTimeout, ResultConnection, ResultGone, ResultParked, ResultExhausted} {
		m.deliveries.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.deliveries, m.attempt, m.endToEnd, m.events, m.badInput, m.queued, m.largestQueue,
			m.circuits, m.disabled, m.tierLag, m.logDropped, m.parkErrors)
	}
	return m
}

// TierLag records the batches waiting in a retry tier.
func (m *Metrics) TierLag(tier string, n int64) { m.tierLag.WithLabelValues(tier).Set(float64(n)) }
