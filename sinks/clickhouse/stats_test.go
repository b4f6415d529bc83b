package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// statsFixture is a fixed, varied set of events: two accounts, days across
// two weeks and three months, categories (some repeated within an event),
// known and unknown providers, every counted event type plus one that is
// not, producer resends (same sg_event_id, another Kafka offset) and
// dropped events bouncer derived beside processed ones.
func statsFixture() []pipeline.Row {
	rng := rand.New(rand.NewPCG(6, 2026))
	day := func(s string) int64 { t, _ := time.Parse(time.DateOnly, s); return t.Unix() }
	days := []int64{day("2026-10-30"), day("2026-11-02"), day("2026-11-03"), day("2026-11-05"), day("2026-11-08"), day("2026-11-09"), day("2026-12-01")}
	domains := []string{"gmail.com", "yahoo.com", "example.org"}
	kinds := []struct{ event, typ, reason string }{
		{"processed", "", ""}, {"processed", "", ""}, {"delivered", "", ""}, {"deferred", "", ""},
		{"bounce", "bounce", "550 5.1.1 user unknown"}, {"bounce", "blocked", "554 blocked"},
		{"dropped", "", "Bounced Address"}, {"dropped", "", "Spam Reporting Address"},
		{"dropped", "", "Unsubscribed Address"}, {"dropped", "", "Invalid"}, {"dropped", "", "Spam Content"},
		{"open", "", ""}, {"open", "", ""}, {"click", "", ""}, {"spamreport", "", ""},
		{"unsubscribe", "", ""}, {"group_unsubscribe", "", ""}, {"group_resubscribe", "", ""},
	}
	catSets := [][]string{nil, {"news"}, {"receipts"}, {"news", "receipts"}, {"news", "news"}}
	dropReasons := []string{"Bounced Address", "Spam Reporting Address", "Unsubscribed Address", "Invalid"}
	var rows []pipeline.Row
	for i := range 500 {
		k := kinds[rng.IntN(len(kinds))]
		acct := "acme"
		if rng.IntN(6) == 0 {
			acct = "other"
		}
		dom := domains[rng.IntN(len(domains))]
		email := fmt.Sprintf("user%d@%s", rng.IntN(8), dom)
		ev := schemas.Event{
			Topic: "t", Offset: int64(i), AccountID: acct, Event: schemas.EventType(k.event), Type: k.typ,
			Email: email, EmailNorm: email, Domain: dom, AddressValid: true,
			Timestamp:   days[rng.IntN(len(days))] + rng.Int64N(86400),
			SGEventID:   fmt.Sprintf("ev%03d", i),
			SGMessageID: fmt.Sprintf("msg%02d", rng.IntN(30)),
			Categories:  catSets[rng.IntN(len(catSets))], Reason: k.reason,
		}
		group := []pipeline.Row{{Event: ev, Provider: enrich.ProviderForDomain(dom)}}
		if k.event == "open" || k.event == "click" { // user agents and places, not from rng (its sequence stays)
			group[0].Agent = fixtureAgents[i%len(fixtureAgents)]
			group[0].Place = fixturePlaces[i%len(fixturePlaces)]
		}
		if k.event == "processed" && rng.IntN(3) == 0 {
			d := ev
			d.Event, d.Reason, d.Index = schemas.EventDropped, dropReasons[rng.IntN(len(dropReasons))], pipeline.DerivedIndexBit
			d.SGEventID, d.EventIDDerived = pipeline.DerivedEventID("dropped", ev.SGEventID), true
			group = append(group, pipeline.Row{Event: d, Provider: group[0].Provider, Derived: true})
		}
		rows = append(rows, group...)
		if rng.IntN(8) == 0 { // the producer sends the message again
			for _, r := range group {
				rows = append(rows, r)
			}
		}
	}
	// Kafka offsets grow within the partition (pipeline.Sink's contract);
	// a derived drop sits at its source's offset.
	next := int64(0)
	for i := range rows {
		if rows[i].Derived {
			rows[i].Offset = next - 1
			continue
		}
		rows[i].Offset = next
		next++
	}
	return rows
}

// fixtureAgents and fixturePlaces are the opens' and clicks' user agents
// and places (the empty ones: not classified, not placed).
var (
	fixtureAgents = []enrich.UserAgent{{Browser: "GmailImageProxy", Client: "Gmail", Device: "Webmail"}, {Browser: "Chrome", Client: "Chrome", Device: "Webmail"},
		{Browser: "Mobile Safari UI/WKWebView", Client: "Apple Mail", Device: "Phone"}, {}, {Browser: "Chrome", Client: "Chrome", Device: "Tablet"}}
	fixturePlaces = []enrich.Place{{Country: "US", Region: "TX"}, {Country: "US", Region: "CA"}, {Country: "DE"}, {}, {Country: "CA", Region: "ON"}, {Country: "US", Region: "TX"}}
)

// periodOf is the first day of the UTC period holding unix time ts.
func periodOf(ts int64, by string) string {
	d := time.Unix(ts, 0).UTC()
	d = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	switch by {
	case "week":
		d = d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
	case "month":
		d = d.AddDate(0, 0, 1-d.Day())
	}
	return d.Format(time.DateOnly)
}

// statsCase is a stats query of one account.
type statsCase struct {
	AccountID string
	analytics.StatsQuery
}

// expectStats computes, in Go, what Store.Stats must return for q.
func expectStats(rows []pipeline.Row, q statsCase) map[[2]string]analytics.StatCounts {
	type set map[string]bool
	type acc struct{ ids [17]set }
	groups := map[[2]string]*acc{}
	for _, r := range rows {
		if r.AccountID != q.AccountID || r.Timestamp < q.From.Unix() || r.Timestamp >= q.To.Unix() {
			continue
		}
		ev := string(r.Event.Event)
		var metrics []int // indexes into analytics.StatCounts' fields, in order
		switch ev {
		case "processed":
			metrics = []int{0}
		case "dropped":
			metrics = []int{2}
			if r.Derived {
				metrics = append(metrics, 1)
			}
			switch r.Reason {
			case "Bounced Address":
				metrics = append(metrics, 3)
			case "Spam Reporting Address":
				metrics = append(metrics, 4)
			case "Unsubscribed Address":
				metrics = append(metrics, 5)
			case "Invalid":
				metrics = append(metrics, 6)
			}
		case "delivered":
			metrics = []int{7}
		case "deferred":
			metrics = []int{8}
		case "bounce":
			if r.Type == "bounce" {
				metrics = []int{9}
			} else if r.Type == "blocked" {
				metrics = []int{10}
			}
		case "open":
			metrics = []int{11, 12}
		case "click":
			metrics = []int{13, 14}
		case "spamreport":
			metrics = []int{15}
		case "unsubscribe", "group_unsubscribe":
			metrics = []int{16}
		default:
			continue // not counted, and no row for it alone
		}
		var keys []string
		switch q.Segment {
		case analytics.SegmentGlobal:
			keys = []string{""}
		case analytics.SegmentCategory:
			for _, c := range r.Categories {
				if slices.Contains(q.Keys, c) && !slices.Contains(keys, c) {
					keys = append(keys, c)
				}
			}
		case analytics.SegmentProvider:
			p := r.Provider
			if p == "" {
				p = analytics.ProviderOther
			}
			if len(q.Keys) == 0 || slices.Contains(q.Keys, p) {
				keys = []string{p}
			}
		case analytics.SegmentDomain:
			if slices.Contains(q.Keys, r.Domain) {
				keys = []string{r.Domain}
			}
		case analytics.SegmentBrowser, analytics.SegmentClient, analytics.SegmentDevice, analytics.SegmentCountry, analytics.SegmentRegion:
			if ev != "open" && ev != "click" || q.Segment == analytics.SegmentBrowser && ev != "click" ||
				(q.Segment == analytics.SegmentClient || q.Segment == analytics.SegmentDevice) && ev != "open" {
				break
			}
			k := map[string]string{analytics.SegmentBrowser: r.Agent.Browser, analytics.SegmentClient: r.Agent.Client, analytics.SegmentDevice: r.Agent.Device,
				analytics.SegmentCountry: r.Place.Country, analytics.SegmentRegion: r.Place.Region}[q.Segment]
			switch {
			case k == "":
			case q.Segment == analytics.SegmentRegion && r.Place.Country != q.Keys[0]:
			case q.Segment == analytics.SegmentClient && q.Class != "" && !strings.EqualFold(q.Class, r.Agent.Device):
			case q.Segment != analytics.SegmentRegion && len(q.Keys) > 0 && !slices.Contains(q.Keys, k):
			default:
				keys = []string{k}
			}
		}
		by := q.AggregatedBy
		if by == "" {
			by = "day"
		}
		for _, k := range keys {
			g := [2]string{periodOf(r.Timestamp, by), k}
			a := groups[g]
			if a == nil {
				a = &acc{}
				for i := range a.ids {
					a.ids[i] = set{}
				}
				groups[g] = a
			}
			for _, m := range metrics {
				id := r.SGEventID
				if m == 12 || m == 14 { // unique opens and clicks
					id = r.SGMessageID + "\x00" + r.EmailNorm
				}
				// Each day counts its own: a week or a month is the sum of
				// its days, as SendGrid sums its daily stats.
				a.ids[m][periodOf(r.Timestamp, "day")+"\x00"+id] = true
			}
		}
	}
	out := map[[2]string]analytics.StatCounts{}
	for g, a := range groups {
		n := func(i int) uint64 { return uint64(len(a.ids[i])) }
		out[g] = analytics.StatCounts{
			Processed: n(0), DerivedDrops: n(1), Drops: n(2), BounceDrops: n(3), SpamReportDrops: n(4),
			UnsubscribeDrops: n(5), InvalidDrops: n(6), Delivered: n(7), Deferred: n(8), Bounces: n(9),
			Blocks: n(10), Opens: n(11), UniqueOpens: n(12), Clicks: n(13), UniqueClicks: n(14),
			SpamReports: n(15), Unsubscribes: n(16),
		}
	}
	return out
}

func TestStatsAreExact(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rows := statsFixture()
	ids := map[string]int{}
	derived := 0
	for _, r := range rows {
		ids[r.SGEventID]++
		if r.Derived {
			derived++
		}
	}
	resent := 0
	for _, n := range ids {
		if n > 1 {
			resent++
		}
	}
	if resent == 0 || derived == 0 {
		t.Fatalf("fixture: %d resent events, %d derived drops; want some of each", resent, derived)
	}
	// Three inserts, the resends among them, as a worker would write them.
	third := len(rows) / 3
	// The third also resends a fifth of the first two's events (the
	// producer again, after the build counted them): read as tail days,
	// they must count once.
	next := rows[len(rows)-1].Offset + 1
	for i := 0; i < 2*third; i += 5 {
		if !rows[i].Derived {
			r := rows[i]
			r.Offset, next = next, next+1
			rows = append(rows, r)
		}
	}
	if err := s.WriteEvents(ctx, rows[:third]); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteEvents(ctx, rows[third:2*third]); err != nil {
		t.Fatal(err)
	}
	day := func(v string) time.Time { d, _ := time.Parse(time.DateOnly, v); return d }
	from, to := day("2026-10-01"), day("2027-01-01")
	t.Run("events table", func(t *testing.T) { checkStats(t, s, rows[:2*third], from, to, 0) })
	// Built: every day of the data comes from the rollups.
	if n, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil || n == 0 {
		t.Fatalf("UpdateRollups: %d chunks, %v", n, err)
	}
	t.Run("rollups", func(t *testing.T) { checkStats(t, s, rows[:2*third], from, to, 7) })
	checkStatus(t, s, from, to, map[DaySource]int{FromRollups: 7, FromEvents: 92 - 7})
	// The third batch lands on built days (with resends of their events):
	// those days are read from the events table until the next build.
	if err := s.WriteEvents(ctx, rows[2*third:]); err != nil {
		t.Fatal(err)
	}
	// The latest three days are read as their builds plus what they did
	// not count (tail days), the others from the events table.
	if p, err := s.planDays(ctx, "acme", dimGlobal, dayOf(from), dayOf(to)); err != nil || len(p.tails) != maxTailDays || len(p.clean) != 0 {
		t.Fatalf("plan: %d tail days, %d clean (%v), want %d and 0", len(p.tails), len(p.clean), err, maxTailDays)
	}
	checkStatus(t, s, from, to, map[DaySource]int{FromRollupsAndTail: maxTailDays, FromEvents: 92 - maxTailDays})
	t.Run("rollups and events", func(t *testing.T) { checkStats(t, s, rows, from, to, 0) })
	// A batch whose marks landed but whose events did not (a crash between
	// the two inserts): its days are read raw, and an update builds them.
	lost := rows[2*third:]
	lost = append([]pipeline.Row(nil), lost...)
	for i := range lost {
		lost[i].Offset += 100000
	}
	if err := s.writeStatsMarks(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("marks without events", func(t *testing.T) { checkStats(t, s, rows, from, to, 0) })
	// The replay stores them: built again, every day from the rollups.
	if err := s.WriteEvents(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil {
		t.Fatal(err)
	}
	rows = append(rows, lost...)
	t.Run("rebuilt", func(t *testing.T) { checkStats(t, s, rows, from, to, 7) })
	if n, err := s.RebuildRollups(ctx, RollupOptions{From: from, To: to, ChunkEvents: 50}); err != nil || n < 7 {
		t.Fatalf("RebuildRollups: %d chunks, %v", n, err)
	}
	t.Run("rebuild", func(t *testing.T) { checkStats(t, s, rows, from, to, 7) })
}

// checkStatus checks how many days of acme's [from, to) RollupStatus
// reports read from each source (what bouncer rollups status prints).
func checkStatus(t *testing.T, s *Store, from, to time.Time, want map[DaySource]int) {
	t.Helper()
	status, err := s.RollupStatus(context.Background(), "acme", from, to)
	if err != nil {
		t.Fatal(err)
	}
	got := map[DaySource]int{}
	for _, src := range status {
		got[src]++
	}
	if !maps.Equal(got, want) {
		t.Errorf("RollupStatus: days per source %v, want %v", got, want)
	}
}

// checkStats compares Store.Stats with the counts computed in Go from rows
// and with StatsExact, for many queries; clean is how many of acme's days
// must come from the rollups (0: none may).
func checkStats(t *testing.T, s *Store, rows []pipeline.Row, from, to time.Time, clean int) {
	ctx := context.Background()
	plan, _, err := s.rollupPlan(ctx, "acme", dimGlobal, dayOf(from), dayOf(to))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != clean {
		t.Errorf("%d of acme's days from the rollups, want %d", len(plan), clean)
	}
	day := func(v string) time.Time { d, _ := time.Parse(time.DateOnly, v); return d }
	// Every count is exercised: none is zero over the whole range.
	var total [17]uint64
	for _, c := range expectStats(rows, statsCase{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month"}}) {
		for i, v := range []uint64{c.Processed, c.DerivedDrops, c.Drops, c.BounceDrops, c.SpamReportDrops,
			c.UnsubscribeDrops, c.InvalidDrops, c.Delivered, c.Deferred, c.Bounces, c.Blocks, c.Opens,
			c.UniqueOpens, c.Clicks, c.UniqueClicks, c.SpamReports, c.Unsubscribes} {
			total[i] += v
		}
	}
	if slices.Contains(total[:], 0) {
		t.Fatalf("fixture: totals %v, want every count above zero", total)
	}
	for _, q := range []statsCase{
		{"acme", analytics.StatsQuery{From: from, To: to}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "day"}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "week"}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month"}},
		{"other", analytics.StatsQuery{From: from, To: to, AggregatedBy: "week"}},
		{"nobody", analytics.StatsQuery{From: from, To: to}},
		// A range that cuts days off both ends of the data.
		{"acme", analytics.StatsQuery{From: day("2026-11-03"), To: day("2026-11-09"), AggregatedBy: "week"}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentCategory, Keys: []string{"news", "receipts", "none"}}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month", Segment: analytics.SegmentCategory, Keys: []string{"receipts"}}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentProvider}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "week", Segment: analytics.SegmentProvider, Keys: []string{"google", analytics.ProviderOther}}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentDomain, Keys: []string{"gmail.com", "example.org"}}},
		{"other", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month", Segment: analytics.SegmentDomain, Keys: []string{"yahoo.com"}}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentBrowser}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "week", Segment: analytics.SegmentBrowser, Keys: []string{"Chrome"}}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentClient}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "month", Segment: analytics.SegmentClient, Class: "webmail"}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentDevice}},
		{"acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "week", Segment: analytics.SegmentCountry}},
		{"acme", analytics.StatsQuery{From: from, To: to, Segment: analytics.SegmentRegion, Keys: []string{"US"}}},
	} {
		name := fmt.Sprintf("%s/%s/%s%v", q.AccountID, q.AggregatedBy, q.Segment, q.Keys)
		got, err := s.Stats(ctx, q.AccountID, q.StatsQuery)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		exact, err := s.StatsExact(ctx, q.AccountID, q.StatsQuery)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, exact) {
			t.Errorf("%s: Stats and StatsExact differ:\n%v\n%v", name, got, exact)
		}
		want := expectStats(rows, q)
		if q.AccountID == "acme" && len(want) == 0 {
			t.Errorf("%s: the fixture gives only %d groups", name, len(want))
		}
		gotMap := map[[2]string]analytics.StatCounts{}
		for i, r := range got {
			if i > 0 && got[i-1].Period > r.Period {
				t.Errorf("%s: rows not ordered by period: %s after %s", name, r.Period, got[i-1].Period)
			}
			gotMap[[2]string{r.Period, r.Key}] = r.Counts
		}
		if len(gotMap) != len(got) {
			t.Errorf("%s: a period and key twice in %v", name, got)
		}
		for g := range want {
			if gotMap[g] != want[g] {
				t.Errorf("%s %v:\n got %+v\nwant %+v", name, g, gotMap[g], want[g])
			}
		}
		for g := range gotMap {
			if _, ok := want[g]; !ok {
				t.Errorf("%s: unexpected row %v %+v", name, g, gotMap[g])
			}
		}
	}
	if _, err := s.Stats(ctx, "acme", analytics.StatsQuery{From: from, To: to, AggregatedBy: "year"}); err == nil {
		t.Error("aggregated by year: want an error")
	}
	// MaxRows: the first rows by period, no more (the API's bound).
	q := analytics.StatsQuery{From: from, To: to, AggregatedBy: "day", Segment: analytics.SegmentProvider}
	all, err := s.Stats(ctx, "acme", q)
	if err != nil || len(all) < 3 {
		t.Fatalf("by day and provider: %d rows, %v", len(all), err)
	}
	q.MaxRows = 2
	if got, err := s.Stats(ctx, "acme", q); err != nil || len(got) != 2 || got[0] != all[0] || got[1] != all[1] {
		t.Errorf("MaxRows 2: %d rows %v, want the first 2 of %d", len(got), err, len(all))
	}
}
