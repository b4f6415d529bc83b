package pipeline

import (
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the sink group's Prometheus metrics.
type Metrics struct {
	consumed      prometheus.Counter
	written       prometheus.Counter
	suppressions  prometheus.Counter
	deadLettered  *prometheus.CounterVec
	insertErrors  prometheus.Counter
	insertSeconds prometheus.Histogram
	batchRows     prometheus.Histogram
	dropped       *prometheus.CounterVec
	routed        prometheus.Counter
	routedAgain   prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_messages_consumed_total", Help: "Kafka messages decoded by the sink group (redeliveries included).",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_events_written_total", Help: "Event rows written to the events table.",
		}),
		suppressions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_suppression_changes_total", Help: "Suppression list changes written.",
		}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_sink_dead_letters_total", Help: "Messages or array elements dead-lettered, by reason.",
		}, []string{"reason"}),
		insertErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_insert_errors_total", Help: "Failed inserts into the events table (retried).",
		}),
		insertSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bouncer_sink_insert_seconds", Help: "Latency of one events insert.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bouncer_sink_batch_rows", Help: "Rows per events insert.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_sink_derived_drops_total", Help: "Derived dropped events for processed events to suppressed recipients, by SendGrid reason.",
		}, []string{"reason"}),
		routed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_routed_copies_total", Help: "Messages copied to the routed topic (re-routing: events in another partition than their recipient's suppression slice), one per message and routed partition; re-sends included.",
		}),
		routedAgain: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_sink_routed_copies_skipped_total", Help: "Routed copies skipped because their source message was stored already (a copy sent again after a failure or a crash).",
		}),
	}
	for _, c := range schemas.RejectCodes() {
		m.deadLettered.WithLabelValues(string(c))
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.written, m.suppressions, m.deadLettered, m.insertErrors, m.insertSeconds, m.batchRows, m.dropped, m.routed, m.routedAgain)
	}
	return m
}
