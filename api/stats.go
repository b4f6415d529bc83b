package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/analytics"
)

// Stats is what the stats routes read; nil: they answer 404.
type Stats interface {
	// Stats returns the counts of the periods and keys that have events,
	// ordered by period.
	Stats(ctx context.Context, account string, q analytics.StatsQuery) ([]analytics.StatsRow, error)
}

// Bounds of the stats parameters.
const (
	maxStatsKeys  = 10 // categories, mailbox_providers, domains per request (SendGrid: 10)
	maxStatsKey   = 255
	maxStatsLimit = 1 << 20
)

// firstStatsDay and lastStatsDay bound the dates events can have (unix
// seconds in 32 bits).
var (
	firstStatsDay = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	lastStatsDay  = time.Date(2106, 2, 6, 0, 0, 0, 0, time.UTC)
)

// statsPage is limit and offset over the periods; limit 0: all.
type statsPage struct{ limit, offset uint64 }

// parseStatsQuery reads SendGrid's stats parameters: start_date
// (required), end_date (default today, UTC), aggregated_by (default day),
// limit and offset when paged, and the segment's keys parameter.
func parseStatsQuery(segment string, v url.Values, now time.Time, paged bool) (analytics.StatsQuery, statsPage, error) {
	q := analytics.StatsQuery{Segment: segment, AggregatedBy: "day"}
	var page statsPage
	date := func(name string) (time.Time, error) {
		d, err := time.Parse(time.DateOnly, v.Get(name))
		if err != nil {
			return d, errorf(EInvalid, name, "%s must be a date as YYYY-MM-DD", name)
		}
		if d.Before(firstStatsDay) || d.After(lastStatsDay) {
			return d, errorf(EInvalid, name, "%s must be from %s to %s", name,
				firstStatsDay.Format(time.DateOnly), lastStatsDay.Format(time.DateOnly))
		}
		return d, nil
	}
	if v.Get("start_date") == "" {
		return q, page, errorf(EInvalid, "start_date", "start_date is required (YYYY-MM-DD)")
	}
	start, err := date("start_date")
	if err != nil {
		return q, page, err
	}
	end := analytics.PeriodStart(now.UTC(), "day")
	if v.Get("end_date") != "" {
		if end, err = date("end_date"); err != nil {
			return q, page, err
		}
	}
	if end.Before(start) {
		return q, page, errorf(EInvalid, "end_date", "end_date must not be before start_date")
	}
	q.From, q.To = start, end.AddDate(0, 0, 1)
	switch by := v.Get("aggregated_by"); by {
	case "":
	case "day", "week", "month":
		q.AggregatedBy = by
	default:
		return q, page, errorf(EInvalid, "aggregated_by", `aggregated_by must be "day", "week" or "month"`)
	}
	if paged {
		if page.limit, _, err = uintParam(v, "limit", 1, maxStatsLimit); err != nil {
			return q, page, err
		}
		if page.offset, _, err = uintParam(v, "offset", 0, maxStatsLimit); err != nil {
			return q, page, err
		}
	}
	param, required := "", false
	switch segment {
	case analytics.SegmentCategory:
		param, required = "categories", true
	case analytics.SegmentProvider:
		param = "mailbox_providers"
	case analytics.SegmentDomain:
		param, required = "domains", true
	}
	if param == "" {
		return q, page, nil
	}
	for _, k := range v[param] {
		k = strings.TrimSpace(k)
		if segment != analytics.SegmentCategory {
			k = strings.ToLower(k)
		}
		if k == "" || len(k) > maxStatsKey || !utf8.ValidString(k) {
			return q, page, errorf(EInvalid, param, "%s must be non-empty names of at most %d bytes", param, maxStatsKey)
		}
		if !slices.Contains(q.Keys, k) {
			q.Keys = append(q.Keys, k)
		}
	}
	switch {
	case required && len(q.Keys) == 0:
		return q, page, errorf(EInvalid, param, "%s is required: give it once per name", param)
	case len(q.Keys) > maxStatsKeys:
		return q, page, errorf(EInvalid, param, "at most %d %s", maxStatsKeys, param)
	}
	return q, page, nil
}

// handleStats: GET /v3/stats, /v3/categories/stats,
// /v3/mailbox_providers/stats and /bouncer/v1/stats/domains.
func (s *server) handleStats(segment string, paged bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.stats
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "stats are not available on this server"))
			return
		}
		q, page, err := parseStatsQuery(segment, r.URL.Query(), s.now(), paged)
		var rows []analytics.StatsRow
		if err == nil {
			rows, err = st.Stats(r.Context(), account(r), q)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := analytics.BuildStats(q, rows)
		out = out[min(page.offset, uint64(len(out))):]
		if page.limit > 0 && page.limit < uint64(len(out)) {
			out = out[:page.limit]
		}
		writeJSON(w, http.StatusOK, out)
	})
}
