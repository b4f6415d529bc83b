package forward

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the forwarder.
type Metrics struct {
	bounces        *prometheus.CounterVec
	emails         *prometheus.CounterVec
	retries        prometheus.Counter
	refreshErrors  prometheus.Counter
	accounts       prometheus.Gauge
	pendingDigests prometheus.Gauge
}

// Outcomes of a bounce of an account with forwarding enabled
// (bouncer_forward_bounces_total{outcome}).
const (
	OutcomeForwarded = "forwarded" // its own report was handed to the relay
	OutcomeDigested  = "digested"  // over the rate cap: listed in a digest
	OutcomeCounted   = "counted"   // over the rate cap and the digest is full: only counted in it
	OutcomeFailed    = "failed"    // its report failed permanently or was given up
	OutcomeLoop      = "loop"      // a bounce of a forwarded message: skipped
	OutcomeSoft      = "soft"      // classified soft: not forwarded
	OutcomeBlock     = "block"     // a block, and blocks are not forwarded
	OutcomeStale     = "stale"     // older than MaxAge: not forwarded
)

// NewMetrics creates the forwarder's metrics, registered with reg unless nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		bounces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_forward_bounces_total",
			Help: "Bounce events of accounts with forwarding enabled, by outcome: forwarded, digested, counted, failed, loop, soft, block, stale.",
		}, []string{"outcome"}),
		emails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_forward_emails_total",
			Help: "Emails the forwarder tried to send, by kind (report, digest) and result (sent, rejected: a permanent 5xx, gave_up: transient failures until the give-up time).",
		}, []string{"kind", "result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_forward_send_retries_total", Help: "Send attempts that failed transiently and were retried.",
		}),
		refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bouncer_forward_settings_errors_total", Help: "Failed reads of the forwarding settings (the previous ones stay in use).",
		}),
		accounts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_forward_accounts_enabled", Help: "Accounts with bounce forwarding enabled, as of the last settings read.",
		}),
		pendingDigests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_forward_pending_digest_bounces", Help: "Bounces waiting in digests not yet sent.",
		}),
	}
	// Every outcome and result exists from the start (at 0), so a rate over
	// failures reads 0, not "no data", until the first one.
	for _, o := range []string{OutcomeForwarded, OutcomeDigested, OutcomeCounted, OutcomeFailed, OutcomeLoop, OutcomeSoft, OutcomeBlock, OutcomeStale} {
		m.bounces.WithLabelValues(o)
	}
	for _, kind := range []string{"report", "digest"} {
		for _, result := range []string{"sent", "rejected", "gave_up"} {
			m.emails.WithLabelValues(kind, result)
		}
	}
	if reg != nil {
		reg.MustRegister(m.bounces, m.emails, m.retries, m.refreshErrors, m.accounts, m.pendingDigests)
	}
	return m
}
