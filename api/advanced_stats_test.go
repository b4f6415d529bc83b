package api

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// TestAdvancedStats: the opens' and clicks' segments ask the store for the
// right segment, keys and class, and answer SendGrid's shapes.
func TestAdvancedStats(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{}
	now := func() time.Time { return time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC) }
	h := NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, Now: now, RateLimit: 1000, GeoIP: true})
	c := analytics.StatCounts{Opens: 3, UniqueOpens: 2, Clicks: 5, UniqueClicks: 4, Delivered: 9}
	for _, tc := range []struct {
		path    string
		rows    []analytics.StatsRow
		segment string
		keys    []string
		class   string
		want    string
	}{
		{"/v3/browsers/stats?start_date=2026-11-02&end_date=2026-11-02", []analytics.StatsRow{{Period: "2026-11-02", Key: "Chrome", Counts: c}},
			analytics.SegmentBrowser, nil, "",
			`[{"date":"2026-11-02","stats":[{"type":"browser","name":"Chrome","metrics":{"clicks":5,"unique_clicks":4}}]}]`},
		{"/v3/browsers/stats?start_date=2026-11-02&end_date=2026-11-02&browsers=Firefox&browsers=Chrome", []analytics.StatsRow{{Period: "2026-11-02", Key: "Chrome", Counts: c}},
			analytics.SegmentBrowser, []string{"Firefox", "Chrome"}, "",
			`[{"date":"2026-11-02","stats":[{"type":"browser","name":"Firefox","metrics":{"clicks":0,"unique_clicks":0}},{"type":"browser","name":"Chrome","metrics":{"clicks":5,"unique_clicks":4}}]}]`},
		{"/v3/clients/stats?start_date=2026-11-02&end_date=2026-11-02", []analytics.StatsRow{{Period: "2026-11-02", Key: "Gmail", Counts: c}},
			analytics.SegmentClient, nil, "",
			`[{"date":"2026-11-02","stats":[{"type":"client","name":"Gmail","metrics":{"opens":3,"unique_opens":2}}]}]`},
		{"/v3/clients/phone/stats?start_date=2026-11-02&end_date=2026-11-02", []analytics.StatsRow{{Period: "2026-11-02", Key: "Apple Mail", Counts: c}},
			analytics.SegmentClient, nil, "phone",
			`[{"date":"2026-11-02","stats":[{"type":"client","name":"Apple Mail","metrics":{"opens":3,"unique_opens":2}}]}]`},
		{"/v3/devices/stats?start_date=2026-11-02&end_date=2026-11-02", []analytics.StatsRow{{Period: "2026-11-02", Key: "Webmail", Counts: c}},
			analytics.SegmentDevice, nil, "",
			`[{"date":"2026-11-02","stats":[{"type":"device","name":"Webmail","metrics":{"opens":3,"unique_opens":2}}]}]`},
		{"/v3/geo/stats?start_date=2026-11-02&end_date=2026-11-02", []analytics.StatsRow{{Period: "2026-11-02", Key: "US", Counts: c}},
			analytics.SegmentCountry, nil, "",
			`[{"date":"2026-11-02","stats":[{"type":"country","name":"US","metrics":{"clicks":5,"opens":3,"unique_clicks":4,"unique_opens":2}}]}]`},
		{"/v3/geo/stats?start_date=2026-11-02&end_date=2026-11-02&country=us", []analytics.StatsRow{{Period: "2026-11-02", Key: "TX", Counts: c}},
			analytics.SegmentRegion, []string{"US"}, "",
			`[{"date":"2026-11-02","stats":[{"type":"province","name":"TX","metrics":{"clicks":5,"opens":3,"unique_clicks":4,"unique_opens":2}}]}]`},
	} {
		st.rows = tc.rows
		rec := do(t, h, "GET", tc.path, token, "")
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != tc.want {
			t.Errorf("%s: %d %s\nwant %s", tc.path, rec.Code, rec.Body, tc.want)
		}
		if st.q.Segment != tc.segment || !slices.Equal(st.q.Keys, tc.keys) || st.q.Class != tc.class || st.account != "acme" {
			t.Errorf("%s: store asked %s %+v", tc.path, st.account, st.q)
		}
	}
	for path, field := range map[string]string{
		"/v3/clients/laptop/stats?start_date=2026-11-02":        "client_type",
		"/v3/geo/stats?start_date=2026-11-02&country=USA":       "country",
		"/v3/geo/stats?start_date=2026-11-02&country=1%3B":      "country",
		"/v3/devices/stats?start_date=2026-11-02&limit=0":       "limit",
		"/v3/browsers/stats?start_date=2026-11-02&browsers=%20": "browsers",
	} {
		rec := do(t, h, "GET", path, token, "")
		if f, _ := sendGridError(t, rec); rec.Code != 400 || f == nil || *f != field {
			t.Errorf("%s: %d %s, want 400 on %s", path, rec.Code, rec.Body, field)
		}
	}
	// Without a geoip database the route says what it needs.
	h = NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, Now: now, RateLimit: 1000})
	rec := do(t, h, "GET", "/v3/geo/stats?start_date=2026-11-02", token, "")
	if _, msg := sendGridError(t, rec); rec.Code != 404 || !strings.Contains(msg, "BOUNCER_GEOIP_DB") {
		t.Errorf("without a database: %d %s", rec.Code, rec.Body)
	}
}
