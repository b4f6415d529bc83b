package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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
	// maxStatsEntries is the most entries (periods × names) one stats
	// answer holds: about 3.5 MB of JSON. Daily stats of 27 years, or of
	// 1,000 days for 10 categories; on paged routes it bounds the page.
	maxStatsEntries = 10000
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
	case analytics.SegmentBrowser:
		param = "browsers"
	}
	if param == "" {
		return q, page, nil
	}
	for _, k := range v[param] {
		k = strings.TrimSpace(k)
		if segment != analytics.SegmentCategory && segment != analytics.SegmentBrowser {
			k = strings.ToLower(k) // providers and domains; browsers are named as uap-core names them
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

// pageStats narrows q to the periods of page (all of them when
// page.limit is 0) and returns how many periods that is. Only those
// periods are asked of the store and built.
func pageStats(q analytics.StatsQuery, page statsPage) (analytics.StatsQuery, int) {
	n := analytics.PeriodCount(q.From, q.To, q.AggregatedBy)
	off := int(min(page.offset, uint64(n)))
	count := n - off
	if page.limit > 0 {
		count = int(min(uint64(count), page.limit))
	}
	first := analytics.PeriodStart(q.From, q.AggregatedBy)
	if off > 0 {
		q.From = analytics.NextPeriod(first, q.AggregatedBy, off)
	}
	if end := analytics.NextPeriod(first, q.AggregatedBy, off+count); end.Before(q.To) {
		q.To = end
	}
	return q, count
}

// statsTooLarge is the 400 of a query whose answer would hold more than
// maxStatsEntries entries, saying how to ask for less.
func statsTooLarge(q analytics.StatsQuery, periods, names int, paged bool) error {
	fixes := []string{"shorten the range", "aggregate by week or month"}
	if paged {
		fixes = append(fixes, "page with limit and offset")
	}
	size := fmt.Sprintf("%d periods (by %s)", periods, q.AggregatedBy)
	if q.Segment != analytics.SegmentGlobal {
		what := map[string]string{analytics.SegmentCategory: "categories", analytics.SegmentProvider: "mailbox_providers", analytics.SegmentDomain: "domains",
			analytics.SegmentBrowser: "browsers", analytics.SegmentClient: "clients", analytics.SegmentDevice: "devices",
			analytics.SegmentCountry: "countries", analytics.SegmentRegion: "regions"}[q.Segment]
		size += fmt.Sprintf(" × %d %s = %d entries", names, what, periods*names)
		if q.Segment == analytics.SegmentProvider && len(q.Keys) == 0 {
			fixes = append(fixes, "name at most a few mailbox_providers")
		} else if analytics.EveryKeySegment(q.Segment) && q.Segment != analytics.SegmentBrowser {
			// Names cannot be chosen: the periods are what to narrow.
		} else {
			fixes = append(fixes, "ask for fewer "+what)
		}
	}
	last := len(fixes) - 1
	return errorf(EInvalid, "end_date", "this asks for %s; one answer holds at most %d entries: %s or %s",
		size, maxStatsEntries, strings.Join(fixes[:last], ", "), fixes[last])
}

// handleStats: GET /v3/stats, /v3/categories/stats,
// /v3/mailbox_providers/stats and /bouncer/v1/stats/domains. An answer
// holds at most maxStatsEntries entries (periods × names, the page's
// periods on paged routes): a larger one is 400 before the store is asked.
// The answer is written period by period, so memory per request is that
// of the store's rows, bounded by the same number.
func (s *server) handleStats(segment string, paged bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.stats
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "stats are not available on this server"))
			return
		}
		q, page, err := parseStatsQuery(segment, r.URL.Query(), s.now(), paged)
		if err == nil {
			err = s.advancedQuery(r, &q)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		q, periods := pageStats(q, page)
		if periods == 0 {
			writeJSON(w, http.StatusOK, []analytics.DateStats{})
			return
		}
		if names := len(analytics.StatsNames(q, nil)); names > 0 && periods*names > maxStatsEntries {
			writeError(w, s.log, r, statsTooLarge(q, periods, names, paged))
			return
		}
		q.MaxRows = maxStatsEntries + 1
		rows, err := st.Stats(r.Context(), account(r), q)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		// Providers without names: the names are those with events (each
		// row is one period and name of the page, so more rows than
		// maxStatsEntries means too many names).
		if names := len(analytics.StatsNames(q, rows)); periods*names > maxStatsEntries {
			writeError(w, s.log, r, statsTooLarge(q, periods, names, paged))
			return
		}
		writeStats(w, q, rows)
	})
}

// writeStats answers 200 with BuildStats' JSON, encoding one period at a
// time.
func writeStats(w http.ResponseWriter, q analytics.StatsQuery, rows []analytics.StatsRow) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	sep := byte('[')
	err := analytics.EachStatsPeriod(q, rows, func(d analytics.DateStats) error {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		bw.WriteByte(sep)
		sep = ','
		_, err = bw.Write(b)
		return err
	})
	if err != nil {
		return // the client went away; the status is sent
	}
	if sep == '[' {
		bw.WriteByte('[')
	}
	bw.WriteString("]\n")
	bw.Flush()
}

// clientTypes are SendGrid's client types (the path of
// /v3/clients/{client_type}/stats), bouncer's device types in lower case.
var clientTypes = []string{"phone", "tablet", "webmail", "desktop"}

// advancedQuery reads what the opens' and clicks' segments take beyond
// parseStatsQuery: the client type of /v3/clients/{client_type}/stats, and
// /v3/geo/stats's country (its regions then), which needs a geoip
// database.
func (s *server) advancedQuery(r *http.Request, q *analytics.StatsQuery) error {
	switch q.Segment {
	case analytics.SegmentClient:
		if ct := r.PathValue("client_type"); ct != "" {
			if !slices.Contains(clientTypes, ct) {
				return errorf(EInvalid, "client_type", "client_type must be one of %s", strings.Join(clientTypes, ", "))
			}
			q.Class = ct
		}
	case analytics.SegmentCountry:
		if !s.cfg.GeoIP {
			return errorf(ENotFound, "", "geo stats need a MaxMind-format geoip database: set BOUNCER_GEOIP_DB on the workers and on bouncer api (docs/analytics.md#geography)")
		}
		if c := r.URL.Query().Get("country"); c != "" {
			if len(c) != 2 || strings.Trim(strings.ToUpper(c), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
				return errorf(EInvalid, "country", "country must be a two-letter ISO 3166 code, e.g. US")
			}
			q.Segment, q.Keys = analytics.SegmentRegion, []string{strings.ToUpper(c)}
		}
	}
	return nil
}
