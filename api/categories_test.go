package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// fakeCategories lists names, filtered by prefix as a store does; it
// records the account asked for.
type fakeCategories struct {
	names   []string
	account string
}

func (f *fakeCategories) Categories(_ context.Context, account, prefix string) ([]string, error) {
	f.account = account
	var out []string
	for _, n := range f.names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

func TestCategoriesList(t *testing.T) {
	token, k := testKey(t, "acme", false)
	fc := &fakeCategories{names: []string{"news", "news-eu", "promo", "receipts"}}
	h := NewServer(Config{Store: &fakeStore{}, Categories: fc, Keys: fakeKeys{k}, RateLimit: 1000})
	for _, tc := range []struct{ query, want string }{
		{"", `[{"category":"news"},{"category":"news-eu"},{"category":"promo"},{"category":"receipts"}]`},
		{"?category=news", `[{"category":"news"},{"category":"news-eu"}]`},
		{"?limit=2&offset=1", `[{"category":"news-eu"},{"category":"promo"}]`},
		{"?offset=9", `[]`},
		{"?category=zzz", `[]`},
	} {
		rec := do(t, h, "GET", "/v3/categories"+tc.query, token, "")
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != tc.want {
			t.Errorf("%s: %d %s, want %s", tc.query, rec.Code, rec.Body, tc.want)
		}
	}
	if fc.account != "acme" {
		t.Errorf("asked for account %q", fc.account)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?offset=-1", "?category=" + strings.Repeat("x", 256), "?category=%ff"} {
		rec := do(t, h, "GET", "/v3/categories"+q, token, "")
		if rec.Code != 400 {
			t.Errorf("%s: %d %s, want 400", q, rec.Code, rec.Body)
		}
		sendGridError(t, rec)
	}
	// The default page is SendGrid's 50.
	fc.names = nil
	for i := range 60 {
		fc.names = append(fc.names, string(rune('A'+i)))
	}
	if rec := do(t, h, "GET", "/v3/categories", token, ""); strings.Count(rec.Body.String(), `"category"`) != 50 {
		t.Errorf("default page: %s", rec.Body)
	}
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	if rec := do(t, h, "GET", "/v3/categories", token, ""); rec.Code != 404 {
		t.Errorf("without a category store: %d", rec.Code)
	}
}

func TestCategorySums(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{rows: []analytics.StatsRow{
		{Period: "1970-01-01", Key: "a", Counts: analytics.StatCounts{Delivered: 5, Opens: 1}},
		{Period: "1970-01-01", Key: "b", Counts: analytics.StatCounts{Delivered: 9, Opens: 3}},
		{Period: "1970-01-01", Key: "c", Counts: analytics.StatCounts{Delivered: 5, Opens: 7}},
	}}
	now := func() time.Time { return time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC) }
	h := NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, Now: now, RateLimit: 1000})
	names := func(body string) string {
		var out []string
		for _, part := range strings.Split(body, `"name":"`)[1:] {
			out = append(out, part[:strings.IndexByte(part, '"')])
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ query, want string }{
		{"", "b,a,c"}, // delivered desc, ties by name
		{"&sort_by_metric=opens", "c,b,a"},
		{"&sort_by_metric=opens&sort_by_direction=asc", "a,b,c"},
		{"&sort_by_direction=asc&limit=2", "a,c"},
		{"&limit=1&offset=1", "a"},
		{"&offset=3", ""},
		{"&aggregated_by=month", "b,a,c"},
	} {
		rec := do(t, h, "GET", "/v3/categories/stats/sums?start_date=2026-11-01"+tc.query, token, "")
		if rec.Code != 200 || names(rec.Body.String()) != tc.want || !strings.HasPrefix(rec.Body.String(), `{"date":"2026-11-01","stats":[`) {
			t.Errorf("%s: %d %s, want %s", tc.query, rec.Code, rec.Body, tc.want)
		}
	}
	want := analytics.StatsQuery{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC),
		AggregatedBy: "all", Segment: analytics.SegmentCategory}
	if st.account != "acme" || !sameQuery(st.q, want) || !st.q.AllKeys {
		t.Errorf("store asked %s %+v, want acme %+v with AllKeys", st.account, st.q, want)
	}
	rec := do(t, h, "GET", "/v3/categories/stats/sums?start_date=2026-11-01", token, "")
	if !strings.Contains(rec.Body.String(), `{"type":"category","name":"b","metrics":{"blocks":0,"bounce_drops":0,"bounces":0,"clicks":0,"deferred":0,"delivered":9,`) {
		t.Errorf("shape: %s", rec.Body)
	}
	for q, field := range map[string]string{
		"": "start_date",
		"?start_date=2026-11-01&sort_by_metric=foo":   "sort_by_metric",
		"?start_date=2026-11-01&sort_by_direction=up": "sort_by_direction",
		"?start_date=2026-11-01&limit=0":              "limit",
		"?start_date=2026-11-01&aggregated_by=year":   "aggregated_by",
	} {
		rec := do(t, h, "GET", "/v3/categories/stats/sums"+q, token, "")
		if f, _ := sendGridError(t, rec); rec.Code != 400 || f == nil || *f != field {
			t.Errorf("%s: %d %s, want 400 on %s", q, rec.Code, rec.Body, field)
		}
	}
}
