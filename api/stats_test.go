package api

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// statsStore is the fake store with stats; it records the last query.
type statsStore struct {
	fakeStore
	rows    []StatsRow
	account string
	q       StatsQuery
}

func (s *statsStore) Stats(ctx context.Context, account string, q StatsQuery) ([]StatsRow, error) {
	s.account, s.q = account, q
	return s.rows, nil
}

func TestStatsShape(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{rows: []StatsRow{{Period: "2026-11-02", Counts: StatCounts{Processed: 5, DerivedDrops: 1, Drops: 3, InvalidDrops: 2, Opens: 4, UniqueOpens: 2}}}}
	now := func() time.Time { return time.Date(2026, 11, 3, 23, 0, 0, 0, time.UTC) }
	h := NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, Now: now})
	rec := do(t, h, "GET", "/v3/stats?start_date=2026-11-01", token, "")
	zero := `{"blocks":0,"bounce_drops":0,"bounces":0,"clicks":0,"deferred":0,"delivered":0,"invalid_emails":0,"opens":0,"processed":0,"requests":0,"spam_report_drops":0,"spam_reports":0,"unique_clicks":0,"unique_opens":0,"unsubscribe_drops":0,"unsubscribes":0}`
	some := `{"blocks":0,"bounce_drops":0,"bounces":0,"clicks":0,"deferred":0,"delivered":0,"invalid_emails":2,"opens":4,"processed":4,"requests":7,"spam_report_drops":0,"spam_reports":0,"unique_clicks":0,"unique_opens":2,"unsubscribe_drops":0,"unsubscribes":0}`
	want := `[{"date":"2026-11-01","stats":[{"metrics":` + zero + `}]},{"date":"2026-11-02","stats":[{"metrics":` + some + `}]},{"date":"2026-11-03","stats":[{"metrics":` + zero + `}]}]`
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("%d %s\nwant %s", rec.Code, rec.Body, want)
	}
	wantQ := StatsQuery{From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC), AggregatedBy: "day"}
	if st.account != "acme" || !sameQuery(st.q, wantQ) {
		t.Errorf("store asked for %s %+v, want acme %+v", st.account, st.q, wantQ)
	}

	st.rows = []StatsRow{{Period: "2026-11-01", Key: "yahoo", Counts: StatCounts{Processed: 1, Drops: 1}}}
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

func sameQuery(a, b StatsQuery) bool {
	return a.From.Equal(b.From) && a.To.Equal(b.To) && a.AggregatedBy == b.AggregatedBy && a.Segment == b.Segment && slices.Equal(a.Keys, b.Keys)
}

func TestStatsPeriods(t *testing.T) {
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	for _, tc := range []struct {
		from, to, by string
		want         []string
	}{
		{"2026-12-30", "2027-01-02", "day", []string{"2026-12-30", "2026-12-31", "2027-01-01"}},
		{"2026-12-30", "2027-01-12", "week", []string{"2026-12-28", "2027-01-04", "2027-01-11"}},
		{"2026-11-01", "2026-11-03", "week", []string{"2026-10-26", "2026-11-02"}}, // 2026-11-01 is a Sunday
		{"2026-11-30", "2027-02-01", "month", []string{"2026-11-01", "2026-12-01", "2027-01-01"}},
	} {
		if got := StatsPeriods(d(tc.from), d(tc.to), tc.by); !slices.Equal(got, tc.want) {
			t.Errorf("%s..%s by %s: %v, want %v", tc.from, tc.to, tc.by, got, tc.want)
		}
	}
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
