package analytics

import (
	"slices"
	"time"
)

// Stats segments: how a stats route splits its counts (SendGrid's "type").
const (
	SegmentGlobal   = ""
	SegmentCategory = "category"
	SegmentProvider = "mailbox_provider"
	SegmentDomain   = "domain"

	// The opens' and clicks' segments (SendGrid's advanced stats): the
	// browser, the mail client, the device type, the country and, within
	// one country, the region (SendGrid's "province").
	SegmentBrowser = "browser"
	SegmentClient  = "client"
	SegmentDevice  = "device"
	SegmentCountry = "country"
	SegmentRegion  = "province"

	// ProviderOther is the mailbox provider of events whose provider is
	// unknown.
	ProviderOther = "other"
)

// StatCounts are the base counts of one period and segment key, each event
// (by sg_event_id) counted once however often a producer resent it.
// Metrics and ProviderMetrics turn them into SendGrid's metrics.
type StatCounts struct {
	Processed        uint64 // processed events
	DerivedDrops     uint64 // dropped events bouncer derived, each beside a processed event
	Drops            uint64 // all dropped events, derived or sent by the producer
	BounceDrops      uint64 // dropped, reason "Bounced Address"
	SpamReportDrops  uint64 // dropped, reason "Spam Reporting Address"
	UnsubscribeDrops uint64 // dropped, reason "Unsubscribed Address"
	InvalidDrops     uint64 // dropped, reason "Invalid"
	Delivered        uint64
	Deferred         uint64
	Bounces          uint64 // bounce events of type bounce
	Blocks           uint64 // bounce events of type blocked
	Opens            uint64
	UniqueOpens      uint64 // distinct (sg_message_id, recipient) with an open
	Clicks           uint64
	UniqueClicks     uint64 // distinct (sg_message_id, recipient) with a click
	SpamReports      uint64
	Unsubscribes     uint64 // unsubscribe and group_unsubscribe events
}

// StatsQuery selects stats of the authenticated account.
type StatsQuery struct {
	// From and To bound the event time, [From, To); both are UTC midnights.
	From, To time.Time
	// AggregatedBy is "day", "week" (Monday to Sunday) or "month"; a
	// store also takes "all": one period, named 1970-01-01, the sum of
	// every day of the range (the category sums).
	AggregatedBy string
	// Segment is one of the Segment constants.
	Segment string
	// Keys are the categories, providers or domains asked for; for
	// providers, none means every provider with events.
	Keys []string
	// AllKeys asks for every key with events, whatever the segment (Keys
	// are then ignored).
	AllKeys bool
	// Class keeps, for SegmentClient, the clients of one device type
	// (compared without case). For SegmentRegion, Keys holds the one
	// country whose regions are counted.
	Class string
	// MaxRows, when positive, is the most rows a store returns (the first
	// by period and key); the API asks for one more than an answer may
	// hold, to tell a query that is too large.
	MaxRows int
}

// StatsRow is the counts of one period (its first day, YYYY-MM-DD, UTC)
// and key ("" for global stats).
type StatsRow struct {
	Period, Key string
	Counts      StatCounts
}

// Metrics are SendGrid's metrics of /v3/stats and /v3/categories/stats.
type Metrics struct {
	Blocks           uint64 `json:"blocks"`
	BounceDrops      uint64 `json:"bounce_drops"`
	Bounces          uint64 `json:"bounces"`
	Clicks           uint64 `json:"clicks"`
	Deferred         uint64 `json:"deferred"`
	Delivered        uint64 `json:"delivered"`
	InvalidEmails    uint64 `json:"invalid_emails"`
	Opens            uint64 `json:"opens"`
	Processed        uint64 `json:"processed"`
	Requests         uint64 `json:"requests"`
	SpamReportDrops  uint64 `json:"spam_report_drops"`
	SpamReports      uint64 `json:"spam_reports"`
	UniqueClicks     uint64 `json:"unique_clicks"`
	UniqueOpens      uint64 `json:"unique_opens"`
	UnsubscribeDrops uint64 `json:"unsubscribe_drops"`
	Unsubscribes     uint64 `json:"unsubscribes"`
}

// ProviderMetrics are SendGrid's metrics of /v3/mailbox_providers/stats.
type ProviderMetrics struct {
	Blocks       uint64 `json:"blocks"`
	Bounces      uint64 `json:"bounces"`
	Clicks       uint64 `json:"clicks"`
	Deferred     uint64 `json:"deferred"`
	Delivered    uint64 `json:"delivered"`
	Drops        uint64 `json:"drops"`
	Opens        uint64 `json:"opens"`
	Processed    uint64 `json:"processed"`
	Requests     uint64 `json:"requests"`
	SpamReports  uint64 `json:"spam_reports"`
	UniqueClicks uint64 `json:"unique_clicks"`
	UniqueOpens  uint64 `json:"unique_opens"`
}

// processed is SendGrid's processed: a message SendGrid drops is requested
// but not processed, so processed events that bouncer derived a drop for
// do not count.
func (c StatCounts) processed() uint64 {
	if c.DerivedDrops > c.Processed {
		return 0
	}
	return c.Processed - c.DerivedDrops
}

// Metrics computes SendGrid's metrics: requests = processed + drops.
func (c StatCounts) Metrics() Metrics {
	p := c.processed()
	return Metrics{
		Blocks: c.Blocks, BounceDrops: c.BounceDrops, Bounces: c.Bounces, Clicks: c.Clicks,
		Deferred: c.Deferred, Delivered: c.Delivered, InvalidEmails: c.InvalidDrops, Opens: c.Opens,
		Processed: p, Requests: p + c.Drops, SpamReportDrops: c.SpamReportDrops, SpamReports: c.SpamReports,
		UniqueClicks: c.UniqueClicks, UniqueOpens: c.UniqueOpens, UnsubscribeDrops: c.UnsubscribeDrops,
		Unsubscribes: c.Unsubscribes,
	}
}

// ProviderMetrics computes SendGrid's mailbox provider metrics.
func (c StatCounts) ProviderMetrics() ProviderMetrics {
	p := c.processed()
	return ProviderMetrics{
		Blocks: c.Blocks, Bounces: c.Bounces, Clicks: c.Clicks, Deferred: c.Deferred,
		Delivered: c.Delivered, Drops: c.Drops, Opens: c.Opens, Processed: p, Requests: p + c.Drops,
		SpamReports: c.SpamReports, UniqueClicks: c.UniqueClicks, UniqueOpens: c.UniqueOpens,
	}
}

// ClickMetrics are SendGrid's metrics of /v3/browsers/stats.
type ClickMetrics struct {
	Clicks       uint64 `json:"clicks"`
	UniqueClicks uint64 `json:"unique_clicks"`
}

// OpenMetrics are SendGrid's metrics of /v3/clients/stats and
// /v3/devices/stats.
type OpenMetrics struct {
	Opens       uint64 `json:"opens"`
	UniqueOpens uint64 `json:"unique_opens"`
}

// GeoMetrics are SendGrid's metrics of /v3/geo/stats.
type GeoMetrics struct {
	Clicks       uint64 `json:"clicks"`
	Opens        uint64 `json:"opens"`
	UniqueClicks uint64 `json:"unique_clicks"`
	UniqueOpens  uint64 `json:"unique_opens"`
}

// SegmentMetrics is the metrics object of segment's stats.
func (c StatCounts) SegmentMetrics(segment string) any {
	switch segment {
	case SegmentProvider:
		return c.ProviderMetrics()
	case SegmentBrowser:
		return ClickMetrics{Clicks: c.Clicks, UniqueClicks: c.UniqueClicks}
	case SegmentClient, SegmentDevice:
		return OpenMetrics{Opens: c.Opens, UniqueOpens: c.UniqueOpens}
	case SegmentCountry, SegmentRegion:
		return GeoMetrics{Clicks: c.Clicks, Opens: c.Opens, UniqueClicks: c.UniqueClicks, UniqueOpens: c.UniqueOpens}
	}
	return c.Metrics()
}

// EveryKeySegment reports whether a segment's stats list every name with
// events when no names are asked for.
func EveryKeySegment(segment string) bool {
	switch segment {
	case SegmentProvider, SegmentBrowser, SegmentClient, SegmentDevice, SegmentCountry, SegmentRegion:
		return true
	}
	return false
}

// StatsEntry is one element of a period's stats: Type and Name are set for
// segmented stats; Metrics is a Metrics or ProviderMetrics.
type StatsEntry struct {
	Type    string `json:"type,omitempty"`
	Name    string `json:"name,omitempty"`
	Metrics any    `json:"metrics"`
}

// DateStats is one period of SendGrid's stats response.
type DateStats struct {
	Date  string       `json:"date"`
	Stats []StatsEntry `json:"stats"`
}

// PeriodStart is the first day of the period holding day d.
func PeriodStart(d time.Time, by string) time.Time {
	d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	switch by {
	case "week":
		return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
	case "month":
		return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return d
}

// NextPeriod is the start of the period k periods after the one starting
// at p.
func NextPeriod(p time.Time, by string, k int) time.Time {
	switch by {
	case "week":
		return p.AddDate(0, 0, 7*k)
	case "month":
		return p.AddDate(0, k, 0)
	}
	return p.AddDate(0, 0, k)
}

// PeriodCount is the number of periods that hold a day of [from, to),
// counted without listing them.
func PeriodCount(from, to time.Time, by string) int {
	if !from.Before(to) {
		return 0
	}
	first, last := PeriodStart(from, by), PeriodStart(to.Add(-time.Nanosecond), by)
	switch by {
	case "week":
		return int(last.Sub(first).Hours()/24)/7 + 1
	case "month":
		return (last.Year()-first.Year())*12 + int(last.Month()) - int(first.Month()) + 1
	}
	return int(last.Sub(first).Hours()/24) + 1
}

// StatsPeriods lists the first days (YYYY-MM-DD) of the periods that hold
// a day of [from, to): the first may start before from (a week starts on
// Monday, a month on the 1st).
func StatsPeriods(from, to time.Time, by string) []string {
	var out []string
	for p := PeriodStart(from, by); p.Before(to); p = NextPeriod(p, by, 1) {
		out = append(out, p.Format(time.DateOnly))
	}
	return out
}

// BuildStats is SendGrid's response for q from the store's rows: every
// period of the range, with zero metrics where there were no events, and
// in each period one entry per key (the keys asked for, in that order, or
// for providers without keys every provider that has events, by name).
func BuildStats(q StatsQuery, rows []StatsRow) []DateStats {
	out := []DateStats{}
	EachStatsPeriod(q, rows, func(d DateStats) error {
		out = append(out, d)
		return nil
	})
	return out
}

// StatsNames are the names of the entries of each period of BuildStats'
// answer: "" for global stats, the keys asked for, or for providers
// without keys every provider of rows, by name.
func StatsNames(q StatsQuery, rows []StatsRow) []string {
	if q.Segment == SegmentGlobal {
		return []string{""}
	}
	if len(q.Keys) > 0 && q.Segment != SegmentRegion {
		return q.Keys
	}
	var keys []string
	for _, r := range rows {
		keys = append(keys, r.Key)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// EachStatsPeriod calls fn with each period of BuildStats' answer, in
// order, building one period at a time (so an answer can be written without
// holding it all); it stops at fn's first error and returns it.
func EachStatsPeriod(q StatsQuery, rows []StatsRow, fn func(DateStats) error) error {
	keys := StatsNames(q, rows)
	type pk struct{ period, key string }
	counts := make(map[pk]StatCounts, len(rows))
	for _, r := range rows {
		counts[pk{r.Period, r.Key}] = r.Counts
	}
	for p := PeriodStart(q.From, q.AggregatedBy); p.Before(q.To); p = NextPeriod(p, q.AggregatedBy, 1) {
		date := p.Format(time.DateOnly)
		day := DateStats{Date: date, Stats: make([]StatsEntry, 0, len(keys))}
		for _, k := range keys {
			c := counts[pk{date, k}]
			e := StatsEntry{Type: q.Segment, Name: k, Metrics: c.SegmentMetrics(q.Segment)}
			day.Stats = append(day.Stats, e)
		}
		if err := fn(day); err != nil {
			return err
		}
	}
	return nil
}

// DayCount is a count for a day (YYYY-MM-DD, UTC) and a key.
type DayCount struct {
	Day, Key string
	N        uint64
}

// ReasonCount is one row of the top bounce reasons.
type ReasonCount struct {
	ReasonCode, Classification, BounceType string
	// Bounces and Blocks count bounce events of type bounce and blocked,
	// each sg_event_id once.
	Bounces, Blocks uint64
	// Example is the diagnostic text of the newest of these events.
	Example string
}

// DomainCounts are the stats counts of one recipient domain.
type DomainCounts struct {
	Domain string
	Counts StatCounts
}
