package api

import (
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests are counted by route pattern and status, never by path: the
// address in a path does not become a label value, an unknown path is
// "unmatched" and an invented method is "other".
func TestRequestMetricsByRoutePattern(t *testing.T) {
	key, k := testKey(t, "acme", false)
	reg := prometheus.NewRegistry()
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1000, Metrics: NewRequestMetrics(reg)})

	do(t, h, "GET", "/v3/suppression/bounces/kim@example.com", key, "")
	do(t, h, "GET", "/v3/suppression/bounces/lee@example.com", key, "")
	do(t, h, "DELETE", "/v3/suppression/bounces/kim@example.com", "", "") // no key: 401
	do(t, h, "GET", "/v3/no/such/route/kim@example.com", key, "")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("BREW", "/v3/suppression/bounces", nil))

	got := map[string]float64{}
	durations := map[string]uint64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
				if strings.Contains(p.GetValue(), "@") {
					t.Errorf("%s has an address in label %s=%q", mf.GetName(), p.GetName(), p.GetValue())
				}
			}
			switch mf.GetName() {
			case "bouncer_api_requests_total":
				got[l["method"]+" "+l["route"]+" "+l["code"]] = m.GetCounter().GetValue()
			case "bouncer_api_request_duration_seconds":
				durations[l["method"]+" "+l["route"]] = m.GetHistogram().GetSampleCount()
			case "bouncer_api_requests_in_flight":
				if v := m.GetGauge().GetValue(); v != 0 {
					t.Errorf("in flight after the requests: %v", v)
				}
			}
		}
	}
	want := map[string]float64{
		"GET /v3/suppression/bounces/{email} 200":    2,
		"DELETE /v3/suppression/bounces/{email} 401": 1,
		"GET unmatched 404":                          1,
		"other unmatched 405":                        1,
	}
	if len(got) != len(want) {
		var keys []string
		for k := range got {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Errorf("series %q; want %d", keys, len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("bouncer_api_requests_total{%s} = %v; want %v", k, got[k], n)
		}
	}
	if durations["GET /v3/suppression/bounces/{email}"] != 2 {
		t.Errorf("latency histogram: %v; want 2 observations of GET /v3/suppression/bounces/{email}", durations)
	}
}
