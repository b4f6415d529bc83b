package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// statsEvents is the fixed input of the stats tests: account acme on
// 2026-10-31 and in the weeks of 2026-11-02 and 2026-11-09 (days between
// without events), account globex on 2026-11-10 only.
func statsEvents() []pipeline.Row {
	at := func(day, hms string) int64 {
		t, err := time.Parse(time.DateTime, day+" "+hms)
		if err != nil {
			panic(err)
		}
		return t.Unix()
	}
	n := 0
	ev := func(acct, event, typ, email, day, hms, id, msg, reason string, cats ...string) pipeline.Row {
		n++
		dom := enrich.DomainOf(email)
		return pipeline.Row{Event: schemas.Event{
			Topic: "stats", Offset: int64(n), AccountID: acct, Event: schemas.EventType(event), Type: typ,
			Email: email, EmailNorm: email, Domain: dom, AddressValid: true, Timestamp: at(day, hms),
			SGEventID: id, SGMessageID: msg, Reason: reason, Categories: cats,
		}, Provider: enrich.ProviderForDomain(dom)}
	}
	derived := func(r pipeline.Row, reason string) pipeline.Row {
		d := r
		d.Event.Event, d.Reason, d.Index = schemas.EventDropped, reason, pipeline.DerivedIndexBit
		d.SGEventID, d.EventIDDerived, d.Derived = pipeline.DerivedEventID("dropped", r.SGEventID), true, true
		return d
	}
	const a, g = "acme", "globex"
	p3 := ev(a, "processed", "", "cat@example.org", "2026-11-02", "10:00:00", "p3", "m3", "", "news")
	p7 := ev(a, "processed", "", "eve@example.org", "2026-11-10", "09:00:00", "p7", "m7", "")
	rows := []pipeline.Row{
		ev(a, "processed", "", "kim@gmail.com", "2026-10-31", "23:59:59", "p0", "m0", ""),
		ev(a, "delivered", "", "kim@gmail.com", "2026-11-02", "00:00:00", "d0", "m0", ""),
		ev(a, "processed", "", "lee@gmail.com", "2026-11-02", "08:00:00", "p1", "m1", "", "news", "news"),
		ev(a, "processed", "", "pat@yahoo.com", "2026-11-02", "08:00:01", "p2", "m2", "", "news", "receipts"),
		p3, derived(p3, "Bounced Address"),
		ev(a, "delivered", "", "lee@gmail.com", "2026-11-02", "08:00:05", "d1", "m1", "", "news"),
		ev(a, "deferred", "", "pat@yahoo.com", "2026-11-02", "08:01:00", "df2", "m2", "", "news"),
		ev(a, "deferred", "", "pat@yahoo.com", "2026-11-02", "09:01:00", "df2b", "m2", ""),
		ev(a, "bounce", "bounce", "pat@yahoo.com", "2026-11-02", "10:01:00", "b2", "m2", "550 5.1.1 user unknown", "receipts"),
		ev(a, "open", "", "lee@gmail.com", "2026-11-02", "12:00:00", "o1", "m1", "", "news"),
		ev(a, "open", "", "lee@gmail.com", "2026-11-02", "13:00:00", "o1b", "m1", "", "news"),
		ev(a, "click", "", "lee@gmail.com", "2026-11-02", "13:00:01", "c1", "m1", "", "news"),
		ev(a, "dropped", "", "bad@@x", "2026-11-02", "14:00:00", "dr1", "m9", "Invalid"),
		ev(a, "processed", "", "max@hotmail.com", "2026-11-04", "10:00:00", "p4", "m4", ""),
		ev(a, "bounce", "blocked", "max@hotmail.com", "2026-11-04", "10:00:03", "bl4", "m4", "554 5.7.1 blocked"),
		ev(a, "processed", "", "ann@gmail.com", "2026-11-04", "11:00:00", "p5", "m5", "", "news"),
		ev(a, "delivered", "", "ann@gmail.com", "2026-11-04", "11:00:02", "d5", "m5", "", "news"),
		ev(a, "spamreport", "", "ann@gmail.com", "2026-11-04", "18:00:00", "s5", "m5", "", "news"),
		ev(a, "unsubscribe", "", "ann@gmail.com", "2026-11-04", "18:00:01", "u5", "m5", ""),
		ev(a, "dropped", "", "ann@gmail.com", "2026-11-04", "19:00:00", "dr6", "m6", "Spam Reporting Address"),
		p7, derived(p7, "Unsubscribed Address"),
		ev(a, "dropped", "", "roy@gmail.com", "2026-11-10", "09:30:00", "dr8", "m8", "Unsubscribed Address"),
		ev(a, "open", "", "kim@gmail.com", "2026-11-10", "10:00:00", "o0", "m0", ""),
		ev(a, "click", "", "kim@gmail.com", "2026-11-10", "10:00:01", "c0", "m0", ""),
		ev(a, "click", "", "kim@gmail.com", "2026-11-10", "10:00:02", "c0b", "m0", ""),
		ev(a, "group_resubscribe", "", "kim@gmail.com", "2026-11-10", "11:00:00", "gr0", "m0", ""),
		ev(g, "processed", "", "zoe@gmail.com", "2026-11-10", "09:00:00", "gp1", "g1", "", "news"),
		ev(g, "delivered", "", "zoe@gmail.com", "2026-11-10", "09:00:01", "gd1", "g1", "", "news"),
	}
	// Producer resends: the same events again at later offsets, one of them
	// with its derived drop.
	for _, id := range []string{"p1", "d1", "o1", "p3", pipeline.DerivedEventID("dropped", "p3"), "gp1"} {
		for _, r := range rows[:len(rows):len(rows)] {
			if r.SGEventID == id {
				n++
				r.Offset = int64(1000 + n)
				rows = append(rows, r)
				break
			}
		}
	}
	return rows
}

// wantStats computes SendGrid's metrics per period in Go from the input:
// each sg_event_id once; requests are the messages asked for (processed
// events and the producer's own drops); a processed message bouncer
// dropped is requested and dropped, not processed.
func wantStats(rows []pipeline.Row, account, by string, match func(pipeline.Row) bool) map[string]map[string]uint64 {
	type sets map[string]map[string]bool
	per := map[string]sets{}
	for _, r := range rows {
		if r.AccountID != account || !match(r) {
			continue
		}
		p := analytics.StatsPeriods(time.Unix(r.Timestamp, 0).UTC(), time.Unix(r.Timestamp, 0).UTC().Add(time.Second), by)[0]
		if per[p] == nil {
			per[p] = sets{}
		}
		add := func(metric, id string) {
			if per[p][metric] == nil {
				per[p][metric] = map[string]bool{}
			}
			per[p][metric][id] = true
		}
		id := r.SGEventID
		switch string(r.Event.Event) {
		case "processed":
			add("processed_events", id)
			add("requests", id)
		case "dropped":
			add("drops", id)
			if r.Derived {
				add("derived", id)
			} else {
				add("requests", id)
			}
			add(map[string]string{"Bounced Address": "bounce_drops", "Spam Reporting Address": "spam_report_drops",
				"Unsubscribed Address": "unsubscribe_drops", "Invalid": "invalid_emails"}[r.Reason], id)
		case "delivered", "deferred":
			add(string(r.Event.Event), id)
		case "bounce":
			add(map[string]string{"bounce": "bounces", "blocked": "blocks"}[r.Type], id)
		case "open", "click":
			add(string(r.Event.Event)+"s", id)
			add("unique_"+string(r.Event.Event)+"s", r.SGMessageID+"/"+r.EmailNorm)
		case "spamreport":
			add("spam_reports", id)
		case "unsubscribe", "group_unsubscribe":
			add("unsubscribes", id)
		}
	}
	out := map[string]map[string]uint64{}
	for p, s := range per {
		m := map[string]uint64{}
		for metric, ids := range s {
			m[metric] = uint64(len(ids))
		}
		for id := range s["processed_events"] {
			if !s["derived"][pipeline.DerivedEventID("dropped", id)] {
				m["processed"]++
			}
		}
		out[p] = m
	}
	return out
}

var sendGridMetrics = []string{"blocks", "bounce_drops", "bounces", "clicks", "deferred", "delivered", "invalid_emails",
	"opens", "processed", "requests", "spam_report_drops", "spam_reports", "unique_clicks", "unique_opens",
	"unsubscribe_drops", "unsubscribes"}

var providerMetrics = []string{"blocks", "bounces", "clicks", "deferred", "delivered", "drops", "opens", "processed",
	"requests", "spam_reports", "unique_clicks", "unique_opens"}

type statsDay struct {
	Date  string `json:"date"`
	Stats []struct {
		Type    *string           `json:"type"`
		Name    *string           `json:"name"`
		Metrics map[string]uint64 `json:"metrics"`
	} `json:"stats"`
}

// getStats calls a stats route and decodes SendGrid's shape.
func (f *apiFixture) getStats(t *testing.T, key, path string) []statsDay {
	t.Helper()
	code, body, _ := f.call(t, key, "GET", path, "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var days []statsDay
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&days); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
	return days
}

// checkStats compares a response with the metrics computed in Go: the
// dates, one entry per name (segment "" for global stats), every metric.
func checkStats(t *testing.T, what string, got []statsDay, dates []string, segment string, names []string, metrics []string,
	want func(name string) map[string]map[string]uint64) {
	t.Helper()
	var gotDates []string
	for _, d := range got {
		gotDates = append(gotDates, d.Date)
	}
	if !slices.Equal(gotDates, dates) {
		t.Fatalf("%s: dates %v, want %v", what, gotDates, dates)
	}
	wants := map[string]map[string]map[string]uint64{}
	for _, n := range names {
		wants[n] = want(n)
	}
	nonzero := 0
	for _, d := range got {
		if len(d.Stats) != len(names) {
			t.Errorf("%s %s: %d entries, want %d", what, d.Date, len(d.Stats), len(names))
			continue
		}
		for i, e := range d.Stats {
			name := names[i]
			if segment == "" && (e.Type != nil || e.Name != nil) || segment != "" && (e.Type == nil || *e.Type != segment || e.Name == nil || *e.Name != name) {
				t.Errorf("%s %s: entry %d has type %v name %v, want %q %q", what, d.Date, i, e.Type, e.Name, segment, name)
			}
			if keys := slices.Sorted(func(yield func(string) bool) {
				for k := range e.Metrics {
					if !yield(k) {
						return
					}
				}
			}); !slices.Equal(keys, metrics) {
				t.Errorf("%s %s: metrics %v, want %v", what, d.Date, keys, metrics)
			}
			for _, m := range metrics {
				w := wants[name][d.Date][m]
				if e.Metrics[m] != w {
					t.Errorf("%s %s %s: %s = %d, want %d", what, d.Date, name, m, e.Metrics[m], w)
				}
				if w > 0 {
					nonzero++
				}
			}
		}
	}
	if nonzero == 0 {
		t.Errorf("%s: every expected metric is zero", what)
	}
}

func all(pipeline.Row) bool { return true }

func TestStatsAPI(t *testing.T) {
	f := newAPIFixture(t)
	rows := statsEvents()
	if err := f.store.WriteEvents(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	f.setClock(time.Date(2026, 11, 11, 15, 0, 0, 0, time.UTC))
	days := analytics.StatsPeriods(time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC), "day")
	if len(days) != 12 || days[0] != "2026-10-31" || days[11] != "2026-11-11" {
		t.Fatalf("periods %v", days)
	}
	global := func(by string) func(string) map[string]map[string]uint64 {
		return func(string) map[string]map[string]uint64 { return wantStats(rows, "acme", by, all) }
	}
	want := global("day")("")
	if want["2026-11-02"]["requests"] != 4 || want["2026-11-02"]["processed"] != 2 || want["2026-11-02"]["unique_opens"] != 1 {
		t.Fatalf("the Go computation is off: %v", want["2026-11-02"])
	}

	// Days without events are there with zero metrics; end_date defaults to today.
	checkStats(t, "by day", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-10-31&end_date=2026-11-11"), days, "", []string{""}, sendGridMetrics, global("day"))
	checkStats(t, "end_date today", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-10-31"), days, "", []string{""}, sendGridMetrics, global("day"))
	checkStats(t, "by week", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-10-31&end_date=2026-11-11&aggregated_by=week"),
		[]string{"2026-10-26", "2026-11-02", "2026-11-09"}, "", []string{""}, sendGridMetrics, global("week"))
	checkStats(t, "by month", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-10-31&end_date=2026-11-11&aggregated_by=month"),
		[]string{"2026-10-01", "2026-11-01"}, "", []string{""}, sendGridMetrics, global("month"))
	checkStats(t, "limit and offset", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-10-31&end_date=2026-11-11&limit=3&offset=2"),
		days[2:5], "", []string{""}, sendGridMetrics, global("day"))

	// A range that starts inside the data counts only from its first day.
	checkStats(t, "from 2026-11-04", f.getStats(t, f.keyA, "/v3/stats?start_date=2026-11-04&end_date=2026-11-10&aggregated_by=week"),
		[]string{"2026-11-02", "2026-11-09"}, "", []string{""}, sendGridMetrics, func(string) map[string]map[string]uint64 {
			return wantStats(rows, "acme", "week", func(r pipeline.Row) bool { return r.Timestamp >= time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC).Unix() })
		})

	// Segments.
	segment := func(by string, match func(name string, r pipeline.Row) bool) func(string) map[string]map[string]uint64 {
		return func(name string) map[string]map[string]uint64 {
			return wantStats(rows, "acme", by, func(r pipeline.Row) bool { return match(name, r) })
		}
	}
	inCategory := func(name string, r pipeline.Row) bool { return slices.Contains(r.Categories, name) }
	checkStats(t, "categories", f.getStats(t, f.keyA, "/v3/categories/stats?start_date=2026-10-31&end_date=2026-11-11&categories=receipts&categories=news&categories=none"),
		days, "category", []string{"receipts", "news", "none"}, sendGridMetrics, segment("day", inCategory))
	ofProvider := func(name string, r pipeline.Row) bool {
		return r.Provider == name || name == "other" && r.Provider == ""
	}
	checkStats(t, "mailbox providers", f.getStats(t, f.keyA, "/v3/mailbox_providers/stats?start_date=2026-10-31&end_date=2026-11-11&aggregated_by=week"),
		[]string{"2026-10-26", "2026-11-02", "2026-11-09"}, "mailbox_provider", []string{"google", "microsoft", "other", "yahoo"}, providerMetrics, segment("week", ofProvider))
	checkStats(t, "one mailbox provider", f.getStats(t, f.keyA, "/v3/mailbox_providers/stats?start_date=2026-10-31&end_date=2026-11-11&mailbox_providers=Google"),
		days, "mailbox_provider", []string{"google"}, providerMetrics, segment("day", ofProvider))
	ofDomain := func(name string, r pipeline.Row) bool { return r.Domain == name }
	checkStats(t, "domains", f.getStats(t, f.keyA, "/bouncer/v1/stats/domains?start_date=2026-10-31&end_date=2026-11-11&aggregated_by=month&domains=gmail.com&domains=example.org"),
		[]string{"2026-10-01", "2026-11-01"}, "domain", []string{"gmail.com", "example.org"}, sendGridMetrics, segment("month", ofDomain))

	// Tenancy: globex sees its own events only, and zeros where acme has some.
	checkStats(t, "globex", f.getStats(t, f.keyB, "/v3/stats?start_date=2026-10-31&end_date=2026-11-11"), days, "", []string{""}, sendGridMetrics,
		func(string) map[string]map[string]uint64 { return wantStats(rows, "globex", "day", all) })
	for _, d := range f.getStats(t, f.keyB, "/v3/categories/stats?start_date=2026-11-02&end_date=2026-11-04&categories=news") {
		for _, m := range d.Stats[0].Metrics {
			if m != 0 {
				t.Errorf("globex sees acme's %s: %v", d.Date, d.Stats[0].Metrics)
			}
		}
	}

	// Parameter errors: 400 in SendGrid's shape, naming the field.
	for _, tc := range []struct{ path, field string }{
		{"/v3/stats", "start_date"},
		{"/v3/stats?start_date=2026-11-31", "start_date"},
		{"/v3/stats?start_date=11/02/2026", "start_date"},
		{"/v3/stats?start_date=1969-12-31", "start_date"},
		{"/v3/stats?start_date=2026-11-02&end_date=2026-11-01", "end_date"},
		{"/v3/stats?start_date=2026-11-02&end_date=tomorrow", "end_date"},
		{"/v3/stats?start_date=2026-11-02&aggregated_by=year", "aggregated_by"},
		{"/v3/stats?start_date=2026-11-02&limit=0", "limit"},
		{"/v3/stats?start_date=2026-11-02&offset=-1", "offset"},
		{"/v3/categories/stats?start_date=2026-11-02", "categories"},
		{"/v3/categories/stats?start_date=2026-11-02&categories=", "categories"},
		{"/v3/mailbox_providers/stats?start_date=2026-11-02&aggregated_by=Week", "aggregated_by"},
		{"/bouncer/v1/stats/domains?start_date=2026-11-02", "domains"},
	} {
		code, body, _ := f.call(t, f.keyA, "GET", tc.path, "")
		var e struct {
			Errors []struct {
				Field   *string `json:"field"`
				Message string  `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal([]byte(body), &e); code != 400 || err != nil || len(e.Errors) != 1 || e.Errors[0].Field == nil ||
			*e.Errors[0].Field != tc.field || e.Errors[0].Message == "" {
			t.Errorf("GET %s: %d %s, want 400 naming %s", tc.path, code, body, tc.field)
		}
	}
	q := url.Values{"start_date": {"2026-11-02"}}
	for i := range 11 {
		q.Add("categories", fmt.Sprint("c", i))
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/categories/stats?"+q.Encode(), ""); code != 400 || !strings.Contains(body, `"field":"categories"`) {
		t.Errorf("11 categories: %d %s, want 400 naming categories", code, body)
	}
	if code, _, _ := f.call(t, "", "GET", "/v3/stats?start_date=2026-11-02", ""); code != 401 {
		t.Errorf("no key: %d, want 401", code)
	}
}

func TestStatsCommand(t *testing.T) {
	f := newAPIFixture(t)
	rows := statsEvents()
	if err := f.store.WriteEvents(context.Background(), rows); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLICKHOUSE_ADDR": testenv.ClickHouse(t), "CLICKHOUSE_DATABASE": f.store.Database()}
	stats := func(args ...string) string {
		t.Helper()
		out, errOut, err := runSupCmd(t, env, "", append([]string{"stats"}, args...)...)
		if err != nil {
			t.Fatalf("bouncer stats %q: %v\n%s", args, err, errOut)
		}
		return out
	}
	// table returns the cells of each line, by the header's column names.
	table := func(out string) []map[string]string {
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		head := strings.Fields(lines[0])
		var rs []map[string]string
		for _, l := range lines[1:] {
			cells := strings.Fields(l)
			if len(cells) != len(head) {
				t.Fatalf("line %q: %d cells, header %v", l, len(cells), head)
			}
			r := map[string]string{}
			for i, h := range head {
				r[h] = cells[i]
			}
			rs = append(rs, r)
		}
		return rs
	}
	check := func(what string, rs []map[string]string, dates []string, want map[string]map[string]uint64, cols []string) {
		t.Helper()
		if len(rs) != len(dates) {
			t.Fatalf("%s: %d rows, want %d", what, len(rs), len(dates))
		}
		for i, r := range rs {
			if r["date"] != dates[i] {
				t.Errorf("%s: row %d date %s, want %s", what, i, r["date"], dates[i])
			}
			for _, c := range cols {
				if got := r[c]; got != fmt.Sprint(want[dates[i]][c]) {
					t.Errorf("%s %s: %s = %s, want %d", what, dates[i], c, got, want[dates[i]][c])
				}
			}
		}
	}
	mainCols := []string{"requests", "processed", "delivered", "deferred", "bounces", "blocks", "unique_opens", "unique_clicks", "spam_reports", "unsubscribes"}
	out := stats("--start", "2026-10-31", "--end", "2026-11-11", "--account", "acme")
	rs := table(out)
	days := analytics.StatsPeriods(time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 12, 0, 0, 0, 0, time.UTC), "day")
	check("by day", rs, days, wantStats(rows, "acme", "day", all), mainCols)
	if _, ok := rs[0]["invalid_emails"]; ok || len(rs[0]) != 1+len(mainCols) {
		t.Errorf("default columns %v, want date and the main metrics", rs[0])
	}
	rs = table(stats("--start", "2026-10-31", "--end", "2026-11-11", "--account", "acme", "--by", "week", "--all"))
	check("by week, all", rs, []string{"2026-10-26", "2026-11-02", "2026-11-09"}, wantStats(rows, "acme", "week", all), sendGridMetrics)
	rs = table(stats("--start", "2026-11-01", "--end", "2026-11-30", "--account", "acme", "--by", "month", "--category", "news"))
	if len(rs) != 1 || rs[0]["category"] != "news" {
		t.Fatalf("--category news: %v", rs)
	}
	check("category", rs, []string{"2026-11-01"}, wantStats(rows, "acme", "month", func(r pipeline.Row) bool { return slices.Contains(r.Categories, "news") }), mainCols)
	rs = table(stats("--start", "2026-11-02", "--end", "2026-11-02"))
	check("account default", rs, []string{"2026-11-02"}, map[string]map[string]uint64{}, mainCols)

	// --json prints what the API answers.
	var cli, http any
	if err := json.Unmarshal([]byte(stats("--start", "2026-10-31", "--end", "2026-11-11", "--account", "acme", "--json", "--by", "week")), &cli); err != nil {
		t.Fatal(err)
	}
	_, body, _ := f.call(t, f.keyA, "GET", "/v3/stats?start_date=2026-10-31&end_date=2026-11-11&aggregated_by=week", "")
	if err := json.Unmarshal([]byte(body), &http); err != nil || !reflect.DeepEqual(cli, http) {
		t.Errorf("--json %v\nAPI %v", cli, http)
	}

	// --segment prints what the dimension's route answers.
	for seg, path := range map[string]string{"mailbox_provider": "/v3/mailbox_providers/stats", "browser": "/v3/browsers/stats", "device": "/v3/devices/stats"} {
		if err := json.Unmarshal([]byte(stats("--start", "2026-10-31", "--end", "2026-11-11", "--account", "acme", "--json", "--segment", seg)), &cli); err != nil {
			t.Fatal(err)
		}
		_, body, _ := f.call(t, f.keyA, "GET", path+"?start_date=2026-10-31&end_date=2026-11-11&limit=500", "")
		if err := json.Unmarshal([]byte(body), &http); err != nil || !reflect.DeepEqual(cli, http) {
			t.Errorf("--segment %s: %v\nAPI %v", seg, cli, http)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stats"}, "--start"},
		{[]string{"stats", "--start", "2026-11-02", "--segment", "planet"}, "--segment"},
		{[]string{"stats", "--start", "2026-11-02", "--segment", "browser", "--category", "news"}, "one of them"},
		{[]string{"stats", "--start", "2026-11-31"}, "--start"},
		{[]string{"stats", "--start", "2026-11-02", "--end", "2026-11-01"}, "before --start"},
		{[]string{"stats", "--start", "2026-11-02", "--by", "year"}, "--by"},
		{[]string{"stats", "--start", "2026-11-02", "--account", "a/b"}, "--account"},
		{[]string{"stats", "--start", "2026-11-02", "extra"}, "no arguments"},
	} {
		_, _, err := runSupCmd(t, env, "", tc.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v (exit %d), want exit 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	if out, _, err := runSupCmd(t, env, "", "stats", "--help"); err != nil || !strings.Contains(out, "--by month") {
		t.Errorf("stats --help: %v\n%s", err, out)
	}
}
