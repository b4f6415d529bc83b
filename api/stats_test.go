package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
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

// TestStatsAnswersAreBounded: an answer holds at most maxStatsEntries
// entries (periods × names; the page's periods on paged routes). A larger
// request is 400 in SendGrid's shape before the store is asked (issue 16,
// item 3: 1970-01-01 to 2106-02-06 by day for 10 categories built 146 MB).
func TestStatsAnswersAreBounded(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &statsStore{}
	h := NewServer(Config{Store: st, Stats: st, Keys: fakeKeys{k}, RateLimit: 1e6})
	ten := func(param string) string {
		var b strings.Builder
		for i := range 10 {
			fmt.Fprintf(&b, "&%s=n%d", param, i)
		}
		return b.String()
	}
	all := "start_date=1970-01-01&end_date=2106-02-06"
	for _, path := range []string{
		"/v3/categories/stats?" + all + ten("categories"),
		"/v3/categories/stats?" + all + "&aggregated_by=month" + ten("categories"),           // 1,634 months × 10
		"/v3/categories/stats?start_date=2026-01-01&end_date=2028-09-27" + ten("categories"), // 1,001 days × 10
		"/v3/stats?" + all,
		"/v3/stats?" + all + "&limit=10001",
		"/v3/mailbox_providers/stats?" + all + ten("mailbox_providers"),
		"/bouncer/v1/stats/domains?" + all + ten("domains"),
		"/bouncer/v1/stats/domains?start_date=2000-01-01&end_date=2106-02-06&offset=3&limit=5000&domains=a&domains=b&domains=c",
	} {
		st.q = analytics.StatsQuery{}
		rec := do(t, h, "GET", path, token, "")
		if rec.Code != 400 {
			t.Errorf("%s: %d (%d bytes), want 400", path, rec.Code, rec.Body.Len())
			continue
		}
		field, msg := sendGridError(t, rec)
		if field == nil || *field != "end_date" || !strings.Contains(msg, "at most 10000") {
			t.Errorf("%s: field %v message %q", path, field, msg)
		}
		if !st.q.From.IsZero() {
			t.Errorf("%s: the store was asked", path)
		}
	}

	// What fits is answered, and the store is asked only for the page.
	rec := do(t, h, "GET", "/v3/stats?"+all+"&limit=1000&offset=20000", token, "")
	var page []analytics.DateStats
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &page) != nil || len(page) != 1000 || page[0].Date != "2024-10-04" || page[999].Date != "2027-06-30" {
		t.Fatalf("a page of 1000 days: %d, %d periods", rec.Code, len(page))
	}
	if want := (analytics.StatsQuery{From: day("2024-10-04"), To: day("2027-07-01"), AggregatedBy: "day", MaxRows: maxStatsEntries + 1}); !sameQuery(st.q, want) || st.q.MaxRows != want.MaxRows {
		t.Errorf("the store was asked %+v, want the page's days %+v", st.q, want)
	}
	rec = do(t, h, "GET", "/v3/categories/stats?"+all+"&aggregated_by=month&categories=a", token, "")
	if rec.Code != 200 || strings.Count(rec.Body.String(), `"date"`) != 1634 {
		t.Errorf("136 years by month for one category: %d", rec.Code)
	}
	if rec := do(t, h, "GET", "/v3/stats?"+all+"&offset=60000", token, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("offset past the end: %d %s", rec.Code, rec.Body)
	}

	// Providers without names: the names are known from the rows.
	st.rows = nil
	for i := range 28 {
		st.rows = append(st.rows, analytics.StatsRow{Period: "2026-01-01", Key: fmt.Sprintf("p%02d", i)})
	}
	rec = do(t, h, "GET", "/v3/mailbox_providers/stats?start_date=2026-01-01&end_date=2026-12-31", token, "")
	if rec.Code != 400 {
		t.Errorf("365 days × 28 providers: %d, want 400", rec.Code)
	} else if _, msg := sendGridError(t, rec); !strings.Contains(msg, "mailbox_providers") {
		t.Errorf("message %q does not say to name mailbox_providers", msg)
	}
	if rec := do(t, h, "GET", "/v3/mailbox_providers/stats?start_date=2026-01-01&end_date=2026-12-31&aggregated_by=month", token, ""); rec.Code != 200 {
		t.Errorf("12 months × 28 providers: %d", rec.Code)
	}
}

func day(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestStatsPagesAreTheWholeAnswersSlices: paging asks the store for the
// page's periods only, and answers exactly the slice of the whole answer.
func TestStatsPagesAreTheWholeAnswersSlices(t *testing.T) {
	for _, by := range []string{"day", "week", "month"} {
		q := analytics.StatsQuery{From: day("2026-11-04"), To: day("2027-03-02"), AggregatedBy: by}
		whole := analytics.StatsPeriods(q.From, q.To, by)
		if n := analytics.PeriodCount(q.From, q.To, by); n != len(whole) {
			t.Errorf("%s: periodCount %d, listed %d", by, n, len(whole))
		}
		for _, pg := range []statsPage{{0, 0}, {1, 0}, {3, 0}, {2, 1}, {5, 2}, {0, uint64(len(whole) - 1)}, {10, uint64(len(whole))}} {
			pq, n := pageStats(q, pg)
			want := whole[min(int(pg.offset), len(whole)):]
			if pg.limit > 0 {
				want = want[:min(int(pg.limit), len(want))]
			}
			got := analytics.StatsPeriods(pq.From, pq.To, by)
			if n != len(want) || !slices.Equal(got, want) && len(want) > 0 {
				t.Errorf("%s limit %d offset %d: %d periods %v, want %v", by, pg.limit, pg.offset, n, got, want)
			}
			if pq.From.Before(q.From) || pq.To.After(q.To) {
				t.Errorf("%s limit %d offset %d: asks %v..%v, outside %v..%v", by, pg.limit, pg.offset, pq.From, pq.To, q.From, q.To)
			}
		}
	}
}

// blockingStats holds every Stats call until release is closed, counting
// the calls in flight per account.
type blockingStats struct {
	statsStore
	release chan struct{}

	mu        sync.Mutex
	in, most  map[string]int
	total     int
	mostTotal int
}

func (b *blockingStats) Stats(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error) {
	b.mu.Lock()
	b.in[account]++
	b.total++
	b.most[account] = max(b.most[account], b.in[account])
	b.mostTotal = max(b.mostTotal, b.total)
	b.mu.Unlock()
	<-b.release
	b.mu.Lock()
	b.in[account]--
	b.total--
	b.mu.Unlock()
	return nil, nil
}

func (b *blockingStats) inFlight() int { b.mu.Lock(); defer b.mu.Unlock(); return b.total }

// TestStatsQueriesAreGated: at most MaxStatsQueries statistics queries run
// at once, a quarter of them for one account; the rest wait for a place.
// A request that cannot get one in time is 429 (its account's places are
// taken) or 503 (the server's are), with Retry-After.
func TestStatsQueriesAreGated(t *testing.T) {
	bs := &blockingStats{release: make(chan struct{}), in: map[string]int{}, most: map[string]int{}}
	var keys fakeKeys
	tokens := map[string]string{}
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		token, k := testKey(t, a, false)
		keys = append(keys, k)
		tokens[a] = token
	}
	h := NewServer(Config{Store: bs, Stats: bs, Keys: keys, RateLimit: 1e6, MaxStatsQueries: 8})
	var wg sync.WaitGroup
	codes := make(chan int, 25)
	for _, token := range tokens {
		for range 5 {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hostileReq("GET", "/v3/stats?start_date=2026-01-01&end_date=2026-01-31", token, ""))
				codes <- rec.Code
			})
		}
	}
	waitFor(t, "8 queries in flight", func() bool { return bs.inFlight() == 8 })
	close(bs.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("a waiting query got %d", c)
		}
	}
	if bs.mostTotal != 8 {
		t.Errorf("at most %d queries ran at once, want 8", bs.mostTotal)
	}
	for a, n := range bs.most {
		if n > 2 {
			t.Errorf("account %s ran %d queries at once, want at most 2", a, n)
		}
	}

	// No place in time: 429 for the account's own, 503 for the server's.
	bs = &blockingStats{release: make(chan struct{}), in: map[string]int{}, most: map[string]int{}}
	s := NewServer(Config{Store: bs, Stats: bs, Keys: keys, RateLimit: 1e6}).(*server)
	s.queries = newQueryGate(2, 1, 10*time.Millisecond)
	for _, a := range []string{"a", "b"} {
		wg.Go(func() {
			do(t, s, "GET", "/v3/stats?start_date=2026-01-01", tokens[a], "")
		})
	}
	waitFor(t, "2 queries in flight", func() bool { return bs.inFlight() == 2 })
	for a, want := range map[string]int{"a": 429, "c": 503} {
		rec := do(t, s, "GET", "/bouncer/v1/stats/domains?start_date=2026-01-01&domains=x", tokens[a], "")
		if rec.Code != want || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("account %s while full: %d Retry-After %q, want %d and 1", a, rec.Code, rec.Header().Get("Retry-After"), want)
		}
		sendGridError(t, rec)
	}
	close(bs.release)
	wg.Wait()
	if len(s.queries.accounts) != 0 || len(s.queries.all) != 0 {
		t.Errorf("places left taken: %d accounts, %d places", len(s.queries.accounts), len(s.queries.all))
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
