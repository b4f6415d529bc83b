package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("stats", "print SendGrid-style email statistics per day, week or month", runStats)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// statColumn is one metric column of the table.
type statColumn struct {
	name string
	get  func(analytics.Metrics) uint64
	main bool
}

var statColumns = []statColumn{
	{"requests", func(m analytics.Metrics) uint64 { return m.Requests }, true},
	{"processed", func(m analytics.Metrics) uint64 { return m.Processed }, true},
	{"delivered", func(m analytics.Metrics) uint64 { return m.Delivered }, true},
	{"deferred", func(m analytics.Metrics) uint64 { return m.Deferred }, true},
	{"bounces", func(m analytics.Metrics) uint64 { return m.Bounces }, true},
	{"blocks", func(m analytics.Metrics) uint64 { return m.Blocks }, true},
	{"bounce_drops", func(m analytics.Metrics) uint64 { return m.BounceDrops }, false},
	{"spam_report_drops", func(m analytics.Metrics) uint64 { return m.SpamReportDrops }, false},
	{"unsubscribe_drops", func(m analytics.Metrics) uint64 { return m.UnsubscribeDrops }, false},
	{"invalid_emails", func(m analytics.Metrics) uint64 { return m.InvalidEmails }, false},
	{"opens", func(m analytics.Metrics) uint64 { return m.Opens }, false},
	{"unique_opens", func(m analytics.Metrics) uint64 { return m.UniqueOpens }, true},
	{"clicks", func(m analytics.Metrics) uint64 { return m.Clicks }, false},
	{"unique_clicks", func(m analytics.Metrics) uint64 { return m.UniqueClicks }, true},
	{"spam_reports", func(m analytics.Metrics) uint64 { return m.SpamReports }, true},
	{"unsubscribes", func(m analytics.Metrics) uint64 { return m.Unsubscribes }, true},
}

func runStats(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "stats")
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	start := fs.String("start", "", "first day, YYYY-MM-DD (UTC); required")
	end := fs.String("end", "", "last day, YYYY-MM-DD (UTC); default today")
	by := fs.String("by", "day", "period: day, week (Monday to Sunday) or month")
	acct := fs.String("account", "default", "the account (1 to 64 of A-Z a-z 0-9 _ . -)")
	var cats stringList
	fs.Var(&cats, "category", "show this category's stats (repeat for up to 10)")
	all := fs.Bool("all", false, "show all of SendGrid's metrics, not only the main ones")
	asJSON := fs.Bool("json", false, "print the API's JSON (SendGrid's shape) instead of a table")
	exact := fs.Bool("exact", false, "count from the events table alone, not from the rollups (the same numbers, slower)")
	segment := fs.String("segment", "", "show every key of one dimension instead: mailbox_provider, browser, client, device or country (the numbers of /v3/mailbox_providers/stats, /v3/browsers/stats, /v3/clients/stats, /v3/devices/stats, /v3/geo/stats)")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("stats takes no arguments; got %q", fs.Args())
	}
	q, err := statsFlags(*start, *end, *by, cats, time.Now())
	if err != nil {
		return err
	}
	switch *segment {
	case "":
	case analytics.SegmentProvider, analytics.SegmentBrowser, analytics.SegmentClient, analytics.SegmentDevice, analytics.SegmentCountry:
		if len(cats) > 0 {
			return usagef("stats: --segment and --category: give one of them")
		}
		q.Segment, q.AllKeys = *segment, true
	default:
		return usagef("stats: --segment %q: want mailbox_provider, browser, client, device or country", *segment)
	}
	if !schemas.ValidAccountID(*acct) {
		return usagef("stats: --account %q: want 1 to 64 of A-Z a-z 0-9 _ . -", *acct)
	}
	store, err := clickhouse.Open(ctx, cf.config())
	if err != nil {
		return err
	}
	defer store.Close()
	read := store.Stats
	if *exact {
		read = store.StatsExact
	}
	rows, err := read(ctx, *acct, q)
	if err != nil {
		return err
	}
	out := analytics.BuildStats(q, rows)
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printStats(env.stdout, out, q.Segment, *all)
	return nil
}

// statsFlags checks the flags of bouncer stats and makes the query.
func statsFlags(start, end, by string, cats []string, now time.Time) (analytics.StatsQuery, error) {
	q := analytics.StatsQuery{AggregatedBy: by}
	if start == "" {
		return q, usagef("stats: missing --start YYYY-MM-DD")
	}
	from, err := time.Parse(time.DateOnly, start)
	if err != nil || from.Year() < 1970 {
		return q, usagef("stats: --start %q: want a date as YYYY-MM-DD, from 1970", start)
	}
	to := now.UTC().Truncate(24 * time.Hour)
	if end != "" {
		if to, err = time.Parse(time.DateOnly, end); err != nil || to.Year() > 2105 {
			return q, usagef("stats: --end %q: want a date as YYYY-MM-DD, before 2106", end)
		}
	}
	if to.Before(from) {
		return q, usagef("stats: --end %s is before --start %s", to.Format(time.DateOnly), start)
	}
	q.From, q.To = from, to.AddDate(0, 0, 1)
	switch by {
	case "day", "week", "month":
	default:
		return q, usagef("stats: --by %q: want day, week or month", by)
	}
	if len(cats) > 10 {
		return q, usagef("stats: at most 10 --category")
	}
	for _, c := range cats {
		if c = strings.TrimSpace(c); c == "" {
			return q, usagef("stats: --category is empty")
		}
		q.Segment = analytics.SegmentCategory
		q.Keys = append(q.Keys, c)
	}
	return q, nil
}

// printStats prints one row per period (and key of the segment) and a
// column per metric.
func printStats(w io.Writer, days []analytics.DateStats, segment string, all bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := []string{"date"}
	named := segment != analytics.SegmentGlobal
	if named {
		head = append(head, segment)
	}
	var cols []statColumn
	for _, c := range statColumns {
		if all || c.main {
			cols = append(cols, c)
			head = append(head, c.name)
		}
	}
	// A dimension with its own metric set (mailbox providers, browsers,
	// clients, devices, countries) shows its own metrics, by JSON name.
	var own []string
	for _, d := range days {
		for _, e := range d.Stats {
			if _, ok := e.Metrics.(analytics.Metrics); !ok && own == nil {
				own = slices.Sorted(maps.Keys(metricMap(e.Metrics)))
			}
		}
	}
	if own != nil {
		head = append(head[:len(head)-len(cols)], own...)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, d := range days {
		for _, e := range d.Stats {
			m, _ := e.Metrics.(analytics.Metrics)
			cells := []string{d.Date}
			if named {
				cells = append(cells, e.Name)
			}
			if own != nil {
				mm := metricMap(e.Metrics)
				for _, name := range own {
					cells = append(cells, fmt.Sprint(mm[name]))
				}
			} else {
				for _, c := range cols {
					cells = append(cells, fmt.Sprint(c.get(m)))
				}
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
}

// metricMap is a stats entry's metrics by their JSON names.
func metricMap(metrics any) map[string]uint64 {
	b, _ := json.Marshal(metrics)
	var m map[string]uint64
	json.Unmarshal(b, &m)
	return m
}
