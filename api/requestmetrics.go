package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestMetrics are the API's request metrics, labelled by route pattern
// (the route table's path, such as /v3/suppression/bounces/{email}), never
// by the requested path: paths hold addresses, and the label values stay a
// fixed set. A request no route serves is counted under route "unmatched".
type RequestMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// NewRequestMetrics creates them, registered with reg unless nil.
func NewRequestMetrics(reg prometheus.Registerer) *RequestMetrics {
	m := &RequestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bouncer_api_requests_total",
			Help: "API requests answered, by method, route pattern (\"unmatched\": no route) and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bouncer_api_request_duration_seconds",
			Help:    "Time to answer an API request, by method and route pattern.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bouncer_api_requests_in_flight", Help: "API requests being answered.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.inFlight)
	}
	return m
}

// unmatched is the route label of requests no route serves.
const unmatched = "unmatched"

// observe counts one answered request. pattern is the ServeMux pattern that
// served it ("GET /v3/stats"), or "" when none did.
func (m *RequestMetrics) observe(method, pattern string, status int, took time.Duration) {
	route := unmatched
	if verb, path, ok := strings.Cut(pattern, " "); ok {
		route = path
		if method != http.MethodHead {
			method = verb
		}
	}
	if !slices.Contains(metricMethods, method) {
		method = "other" // any string can be sent as a method
	}
	if status == 0 {
		status = http.StatusOK
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(took.Seconds())
}

var metricMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
