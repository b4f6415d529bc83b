package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/analytics"
)

// CategoryStore lists an account's categories.
type CategoryStore interface {
	// Categories returns the categories of the account's events that start
	// with prefix, sorted.
	Categories(ctx context.Context, account, prefix string) ([]string, error)
}

// Bounds of the category routes' parameters.
const (
	defaultCategoriesLimit = 50  // SendGrid's default page
	maxCategoriesLimit     = 500 // bouncer's bound (SendGrid states none)
	defaultSumsLimit       = 5   // SendGrid's default
)

// handleCategories: GET /v3/categories, the account's categories
// (category: a prefix), paged with limit and offset, sorted by name.
func (s *server) handleCategories() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.cfg.Categories
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "categories are not available on this server"))
			return
		}
		v := r.URL.Query()
		prefix := v.Get("category")
		if len(prefix) > maxStatsKey || !utf8.ValidString(prefix) {
			writeError(w, s.log, r, errorf(EInvalid, "category", "category must be a prefix of at most %d bytes of UTF-8", maxStatsKey))
			return
		}
		limit, set, err := uintParam(v, "limit", 1, maxCategoriesLimit)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if !set {
			limit = defaultCategoriesLimit
		}
		offset, _, err := uintParam(v, "offset", 0, maxStatsLimit)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		names, err := st.Categories(r.Context(), account(r), prefix)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		type category struct {
			Category string `json:"category"`
		}
		out := []category{}
		for _, n := range page(names, offset, limit) {
			out = append(out, category{n})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// page is s[offset:offset+limit], clamped.
func page[T any](s []T, offset, limit uint64) []T {
	off := min(offset, uint64(len(s)))
	return s[off:min(off+limit, uint64(len(s)))]
}

// sumMetrics are the metrics a category sum can be sorted by, by their
// JSON names.
var sumMetrics = map[string]func(analytics.Metrics) uint64{
	"blocks": func(m analytics.Metrics) uint64 { return m.Blocks }, "bounce_drops": func(m analytics.Metrics) uint64 { return m.BounceDrops },
	"bounces": func(m analytics.Metrics) uint64 { return m.Bounces }, "clicks": func(m analytics.Metrics) uint64 { return m.Clicks },
	"deferred": func(m analytics.Metrics) uint64 { return m.Deferred }, "delivered": func(m analytics.Metrics) uint64 { return m.Delivered },
	"invalid_emails": func(m analytics.Metrics) uint64 { return m.InvalidEmails }, "opens": func(m analytics.Metrics) uint64 { return m.Opens },
	"processed": func(m analytics.Metrics) uint64 { return m.Processed }, "requests": func(m analytics.Metrics) uint64 { return m.Requests },
	"spam_report_drops": func(m analytics.Metrics) uint64 { return m.SpamReportDrops }, "spam_reports": func(m analytics.Metrics) uint64 { return m.SpamReports },
	"unique_clicks": func(m analytics.Metrics) uint64 { return m.UniqueClicks }, "unique_opens": func(m analytics.Metrics) uint64 { return m.UniqueOpens },
	"unsubscribe_drops": func(m analytics.Metrics) uint64 { return m.UnsubscribeDrops }, "unsubscribes": func(m analytics.Metrics) uint64 { return m.Unsubscribes },
}

// handleCategorySums: GET /v3/categories/stats/sums, every category's
// metrics summed over the range (start_date, end_date; aggregated_by is
// checked and does not change a sum), sorted by sort_by_metric (default
// delivered) in sort_by_direction (default desc; ties by name), paged with
// limit (default 5) and offset. One object, dated start_date, as SendGrid.
func (s *server) handleCategorySums() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.stats
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "stats are not available on this server"))
			return
		}
		v := r.URL.Query()
		q, _, err := parseStatsQuery(analytics.SegmentGlobal, v, s.now(), false)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		metric := v.Get("sort_by_metric")
		if metric == "" {
			metric = "delivered"
		}
		value, ok := sumMetrics[metric]
		if !ok {
			names := make([]string, 0, len(sumMetrics))
			for n := range sumMetrics {
				names = append(names, n)
			}
			slices.Sort(names)
			writeError(w, s.log, r, errorf(EInvalid, "sort_by_metric", "sort_by_metric must be one of %s", strings.Join(names, ", ")))
			return
		}
		desc := true
		switch v.Get("sort_by_direction") {
		case "", "desc":
		case "asc":
			desc = false
		default:
			writeError(w, s.log, r, errorf(EInvalid, "sort_by_direction", `sort_by_direction must be "asc" or "desc"`))
			return
		}
		limit, set, err := uintParam(v, "limit", 1, maxStatsEntries)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if !set {
			limit = defaultSumsLimit
		}
		offset, _, err := uintParam(v, "offset", 0, maxStatsLimit)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		date := q.From.Format("2006-01-02")
		q.Segment, q.AggregatedBy, q.AllKeys = analytics.SegmentCategory, "all", true
		rows, err := st.Stats(r.Context(), account(r), q)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		type sum struct {
			name    string
			metrics analytics.Metrics
		}
		sums := make([]sum, 0, len(rows))
		for _, row := range rows {
			sums = append(sums, sum{row.Key, row.Counts.Metrics()})
		}
		slices.SortFunc(sums, func(a, b sum) int {
			x, y := value(a.metrics), value(b.metrics)
			switch {
			case x == y:
				return strings.Compare(a.name, b.name)
			case (x < y) != desc:
				return -1
			}
			return 1
		})
		out := analytics.DateStats{Date: date, Stats: []analytics.StatsEntry{}}
		for _, e := range page(sums, offset, limit) {
			out.Stats = append(out.Stats, analytics.StatsEntry{Type: analytics.SegmentCategory, Name: e.name, Metrics: e.metrics})
		}
		writeJSON(w, http.StatusOK, out)
	})
}
