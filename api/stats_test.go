package api

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// statsStore is the fake store with stats; it records the last query.
type statsStore struct {
	fakeStore
	rows    []analytics.StatsRow
	account string
	q       analytics.StatsQuery
}

func (s *statsStore) Stats(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error) {
	s.account, s.q = account, q
	return s.rows, nil
}

func TestStatsShape(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{rows: []analytics.StatsRow{{Period: "2026-11-02", Counts: analytics.StatCounts{Processed: 5, DerivedDrops: 1, Drops: 3, InvalidDrops: 2, Opens: 4, UniqueOpens: 2}}}}
	now := func() time.Time { return time.Date(2026, 11, 3, 23, 0, 0, 0, time.UTC) }
	h := NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, Now: now})
	rec := do(t, h, "GET", "/v3/stats?start_date=2026-11-01", token, "")
	zero := `{"blocks":0,"bounce_drops":0,"bounces":0,"clicks":0,"deferred":0,"delivered":0,"invalid_emails":0,"opens":0,"processed":0,"requests":0,"spam_report_drops":0,"spam_reports":0,"unique_clicks":0,"unique_opens":0,"unsubscribe_drops":0,"unsubscribes":0}`
	some := `{"blocks":0,"bounce_drops":0,"bounces":0,"clicks":0,"deferred":0,"delivered":0,"invalid_emails":2,"opens":4,"processed":4,"requests":7,"spam_report_drops":0,"spam_reports":0,"unique_clicks":0,"unique_opens":2,"unsubscribe_drops":0,"unsubscribes":0}`
	want := `[{"date":"2026-11-01","stats":[{"metrics":` + zero + `}]},{"date":"2026-11-02","stats":[{"metrics":` + some + `}]},{"date":"2026-11-03","stats":[{"metrics":` + zero + `}]}]`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("%d %s\nwant %s", rec.Code, rec.Body, want)
	}
	wantQ := analytics.StatsQuery{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC), AggregatedBy: "day"}
	if st.account != "acme" || !sameQuery(st.q, wantQ) {
		t.Errorf("store asked for %s %+v, want acme %+v", st.account, st.q, wantQ)
	}

	st.rows = []analytics.StatsRow{{Period: "2026-11-01", Key: "yahoo", Counts: analytics.StatCounts{Processed: 1, Drops: 1}}}
	rec = do(t, h, "GET", "/v3/mailbox_providers/stats?start_date=2026-11-01&end_date=2026-11-01&aggregated_by=month", token, "")
	want = `[{"date":"2026-11-01","stats":[{"type":"mailbox_provider","name":"yahoo","metrics":{"blocks":0,"bounces":0,"clicks":0,"deferred":0,"delivered":0,"drops":1,"opens":0,"processed":1,"requests":2,"spam_reports":0,"unique_clicks":0,"unique_opens":0}}]}]`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("providers: %d %s\nwant %s", rec.Code, rec.Body, want)
	}
	rec = do(t, h, "GET", "/v3/categories/stats?start_date=2026-11-01&end_date=2026-11-01&categories=b&categories=a&categories=b", token, "")
	if rec.Code != 200 || !slices.Equal(st.q.Keys, []string{"b", "a"}) || !strings.Contains(rec.Body.String(), `"type":"category","name":"b"`) ||
		strings.Index(rec.Body.String(), `"name":"b"`) > strings.Index(rec.Body.String(), `"name":"a"`) {
		t.Errorf("categories in the order asked, once each: keys %v, %d %s", st.q.Keys, rec.Code, rec.Body)
	}

	// A store without stats: 404 in SendGrid's shape.
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}})
	if rec := do(t, h, "GET", "/v3/stats?start_date=2026-11-01", token, ""); rec.Code != 404 {
		t.Errorf("without stats: %d", rec.Code)
	} else {
		sendGridError(t, rec)
	}
}

func sameQuery(a, b analytics.StatsQuery) bool {
	return a.From.Equal(b.From) && a.To.Equal(b.To) && a.AggregatedBy == b.AggregatedBy && a.Segment == b.Segment && slices.Equal(a.Keys, b.Keys)
}

func TestStatsParameterErrors(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &statsStore{}, Stats: &statsStore{}, Keys: fakeKeys{k}})
	for _, tc := range []struct{ path, field string }{
		{"/v3/stats", "start_date"},
		{"/v3/stats?start_date=2026-13-01", "start_date"},
		{"/v3/stats?start_date=2026-11-02&end_date=2026-11-01", "end_date"},
		{"/v3/stats?start_date=2026-11-02&end_date=2106-02-07", "end_date"},
		{"/v3/stats?start_date=2026-11-02&aggregated_by=hour", "aggregated_by"},
		{"/v3/stats?start_date=2026-11-02&limit=x", "limit"},
		{"/v3/categories/stats?start_date=2026-11-02", "categories"},
		{"/v3/mailbox_providers/stats?start_date=2026-11-02&mailbox_providers=" + strings.Repeat("x", 256), "mailbox_providers"},
		{"/bouncer/v1/stats/domains?start_date=2026-11-02&domains=%20", "domains"},
	} {
		rec := do(t, h, "GET", tc.path, token, "")
		if rec.Code != 400 {
			t.Errorf("%s: %d, want 400", tc.path, rec.Code)
			continue
		}
		if field, _ := sendGridError(t, rec); field == nil || *field != tc.field {
			t.Errorf("%s: field %v, want %s", tc.path, field, tc.field)
		}
	}
	// limit and offset are SendGrid's where its spec has them; categories has none.
	if rec := do(t, h, "GET", "/v3/categories/stats?start_date=2026-11-02&categories=a&limit=0", token, ""); rec.Code != 200 {
		t.Errorf("categories with limit: %d %s", rec.Code, rec.Body)
	}
}
