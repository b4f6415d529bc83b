package webhook

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bouncer-mail/bouncer/subscription"
)

// gather reads every gauge of reg as name{label value} -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "{" + l.GetValue() + "}"
			}
			if m.Gauge != nil {
				out[k] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// The parked-batch ages grow with the clock while nothing updates them (a
// stuck consumer), take the oldest of a tier's partitions, read 0 for a
// partition with nothing waiting, and vanish with the partition.
func TestParkedBatchAges(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.parked.now = func() time.Time { return now }

	m.ParkedNone("5m", 0)
	m.ParkedHead("5m", 1, now.Add(-3*time.Minute), now.Add(2*time.Minute))   // not due yet
	m.ParkedHead("5m", 2, now.Add(-10*time.Minute), now.Add(-5*time.Minute)) // 5 minutes late
	m.ParkedNone("30m", 0)
	got := gather(t, reg)
	for k, want := range map[string]float64{
		"bouncer_webhook_parked_oldest_age_seconds{5m}":  600,
		"bouncer_webhook_parked_overdue_seconds{5m}":     300,
		"bouncer_webhook_parked_oldest_age_seconds{30m}": 0,
		"bouncer_webhook_parked_overdue_seconds{30m}":    0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v); want %v", k, v, ok, want)
		}
	}

	now = now.Add(time.Hour) // nothing moved meanwhile
	if v := gather(t, reg)["bouncer_webhook_parked_overdue_seconds{5m}"]; v != 3900 {
		t.Errorf("an hour later, overdue = %v; want 3900", v)
	}

	m.ParkedGone("30m", 0)
	if _, ok := gather(t, reg)["bouncer_webhook_parked_oldest_age_seconds{30m}"]; ok {
		t.Error("a tier whose partitions all moved away still has a series")
	}
}

// Subscriptions are counted by state; a disabled one counts as disabled
// whatever the customer's switch says.
func TestEndpointStates(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.countEndpoints([]subscription.Webhook{
		{ID: "a", Enabled: true},
		{ID: "b", Enabled: true},
		{ID: "c", Enabled: false},
		{ID: "d", Enabled: true, DisabledAt: time.Unix(1, 0)},
		{ID: "e", Enabled: false, DisabledAt: time.Unix(1, 0)},
	})
	got := gather(t, reg)
	for state, want := range map[string]float64{"active": 2, "off": 1, "disabled": 2} {
		if v := got["bouncer_webhook_endpoints{"+state+"}"]; v != want {
			t.Errorf("bouncer_webhook_endpoints{state=%q} = %v; want %v", state, v, want)
		}
	}
}
