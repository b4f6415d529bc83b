package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestActivityByTimeWindows: activity filtered by last_event_time (with and
// without a status) answers exactly as the query over all the account's
// events, whether the activity windows answer (built days, batches stored
// after the build on other days or on the day itself, with messages whose
// other events are days earlier) or not (days without windows), and the
// windows answer whenever they can.
func TestActivityByTimeWindows(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	day := func(d int, hh, mm int) int64 {
		return time.Date(2026, 11, 10+d, hh, mm, 0, 0, time.UTC).Unix()
	}
	offset := int64(0)
	ev := func(acct, msg, event string, at int64) pipeline.Row {
		offset++
		return pipeline.Row{Event: schemas.Event{Topic: "t", Offset: offset, AccountID: acct, Event: schemas.EventType(event),
			Email: msg + "@gmail.com", EmailNorm: msg + "@gmail.com", Domain: "gmail.com", AddressValid: true, Timestamp: at,
			SGEventID: fmt.Sprintf("%s-%s-%d", msg, event, at), SGMessageID: msg, FromEmail: "news@shop.io", Subject: "S " + msg}}
	}
	write := func(rows ...pipeline.Row) {
		t.Helper()
		if err := s.WriteEvents(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	update := func() {
		t.Helper()
		if _, err := s.UpdateRollups(ctx, time.Now().AddDate(0, 0, -1), 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Day 1 (2026-11-11): mA delivered (opened on day 3, later), mB bounced,
	// mC dropped after being processed the day before, mD delivered, and
	// another account's message with the same id as mB.
	write(ev("acme", "mA", "processed", day(1, 10, 0)), ev("acme", "mA", "delivered", day(1, 10, 1)),
		ev("acme", "mB", "processed", day(1, 11, 0)), ev("acme", "mB", "bounce", day(1, 11, 5)),
		ev("acme", "mC", "processed", day(0, 23, 0)), ev("acme", "mC", "dropped", day(1, 1, 0)),
		ev("acme", "mD", "processed", day(1, 12, 0)), ev("acme", "mD", "delivered", day(1, 12, 1)),
		ev("other", "mB", "delivered", day(1, 13, 0)),
		// Late on day 1 (the range's last hour and last quarter: the
		// parts activityByTime tries first).
		ev("other", "mL1", "processed", day(1, 23, 10)), ev("other", "mL1", "bounce", day(1, 23, 11)),
		ev("other", "mL2", "delivered", day(1, 23, 20)), ev("other", "mL3", "dropped", day(1, 20, 0)),
		ev("other", "mL4", "processed", day(0, 22, 0)), ev("other", "mL4", "delivered", day(1, 19, 0)))
	// Older events on day -5: mE, mF that bounces on day 1 later, and mH
	// opened on day -4 and clicked on day 1 later.
	write(ev("acme", "mE", "delivered", day(-5, 9, 0)), ev("acme", "mF", "processed", day(-5, 9, 0)),
		ev("acme", "mH", "delivered", day(-5, 10, 0)), ev("acme", "mH", "open", day(-4, 8, 0)))

	filters := map[string]*analytics.ActivityFilter{
		"day 1": aBetween("2026-11-11T00:00:00Z", "2026-11-12T00:00:00Z"),
		"day 1 not_delivered": aOp(analytics.FilterAnd, aEq("status", "not_delivered"),
			aBetween("2026-11-11T00:00:00Z", "2026-11-12T00:00:00Z")),
		"day 1 delivered": aOp(analytics.FilterAnd, aBetween("2026-11-11T00:00:00Z", "2026-11-11T23:59:59Z"),
			aEq("status", "delivered")),
		"day 1 morning not_delivered": aOp(analytics.FilterAnd, aEq("status", "not_delivered"),
			aBetween("2026-11-11T00:00:00Z", "2026-11-11T11:00:00Z")),
		"days 0 to 3": aBetween("2026-11-10T00:00:00Z", "2026-11-13T23:59:59Z"),
		"day 3":       aBetween("2026-11-13T00:00:00Z", "2026-11-13T23:59:59Z"),
	}
	// check compares every filter's answer with the scanning query's, and
	// whether the windows answered day 1 with the one expected.
	check := func(t *testing.T, windowed bool, want map[string][]string) {
		t.Helper()
		_, ok, err := s.activityTimePlan(ctx, "acme", time.Date(2026, 11, 11, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 11, 23, 0, 0, 0, time.UTC))
		if err != nil || ok != windowed {
			t.Errorf("day 1 read by windows: %v (%v), want %v", ok, err, windowed)
		}
		for name, f := range filters {
			for _, acct := range []string{"acme", "other"} {
				// Small limits: answered from the range's last part when
				// it has enough matches.
				for _, limit := range []int{1, 2, 3} {
					got, err := s.ActivityMessages(ctx, acct, f, limit)
					if err != nil {
						t.Fatalf("%s limit %d: %v", name, limit, err)
					}
					if scanned := scanActivity(t, s, acct, f, limit); !slices.Equal(got, scanned) {
						t.Errorf("%s (%s) limit %d:\n got %+v\nscan %+v", name, acct, limit, got, scanned)
					}
				}
				got, err := s.ActivityMessages(ctx, acct, f, 100)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				scanned := scanActivity(t, s, acct, f, 100)
				if !slices.Equal(got, scanned) {
					t.Errorf("%s (%s):\n got %+v\nscan %+v", name, acct, got, scanned)
				}
				if w, ok := want[name]; ok && acct == "acme" {
					var ids []string
					for _, m := range got {
						ids = append(ids, m.MsgID)
					}
					if !slices.Equal(ids, w) {
						t.Errorf("%s: %v, want %v", name, ids, w)
					}
				}
			}
		}
	}
	t.Run("not built", func(t *testing.T) {
		check(t, false, map[string][]string{"day 1": {"mD", "mB", "mA", "mC"}, "day 1 not_delivered": {"mB", "mC"}})
	})
	update()
	t.Run("built", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1": {"mD", "mB", "mA", "mC"}, "day 1 not_delivered": {"mB", "mC"},
			"day 1 delivered": {"mD", "mA"}, "day 1 morning not_delivered": {"mC"}})
	})
	// Windows lost after the stats' build (a failed window build): the
	// next update builds the windows alone.
	if err := s.conn.Exec(ctx, "TRUNCATE TABLE activity_windows"); err != nil {
		t.Fatal(err)
	}
	t.Run("windows lost", func(t *testing.T) { check(t, false, nil) })
	update()
	t.Run("windows rebuilt", func(t *testing.T) { check(t, true, map[string][]string{"day 1 not_delivered": {"mB", "mC"}}) })
	// mA is opened on day 3, after the build: its last event leaves day 1,
	// read from the batch's day beside day 1's window.
	write(ev("acme", "mA", "open", day(3, 9, 0)))
	t.Run("later batch on another day", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1": {"mD", "mB", "mC"}, "day 1 delivered": {"mD"}, "day 3": {"mA"}})
	})
	// mF (processed on day -5) bounces on day 1 and mH (opened on day
	// -4) is clicked on day 1: a batch on a built day (today, while
	// events arrive). Day 1 is read by its window, the batch's day, and
	// the message_index windows of the messages the window did not see:
	// without those, mH's open would be missed.
	write(ev("acme", "mF", "bounce", day(1, 14, 0)), ev("acme", "mH", "click", day(1, 16, 0)))
	t.Run("later batch on the day", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1 not_delivered": {"mF", "mB", "mC"}, "day 1": {"mH", "mF", "mD", "mB", "mC"}})
	})
	update()
	t.Run("built again", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1 not_delivered": {"mF", "mB", "mC"}, "day 1": {"mH", "mF", "mD", "mB", "mC"}})
	})
	// A batch whose marks were stored but not its events (a crash between
	// the inserts) on day 1: its rows are none of the stored ones, so the
	// windows answer as before until it is stored.
	lost := []pipeline.Row{ev("acme", "mG", "bounce", day(1, 15, 0))}
	if err := s.writeStatsMarks(ctx, lost); err != nil {
		t.Fatal(err)
	}
	t.Run("marks without events", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1 not_delivered": {"mF", "mB", "mC"}})
	})
	// Stored (the replay) and not yet built: a message of the day's
	// unseen rows.
	write(lost...)
	t.Run("replayed", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1 not_delivered": {"mG", "mF", "mB", "mC"}})
	})
	// A batch stored while a read runs (its marks change): the read is
	// planned and made again, still by the windows.
	reads := 0
	s.activityRead = func() {
		if reads++; reads == 1 {
			write(ev("acme", "mI", "bounce", day(1, 17, 0)))
		}
	}
	got, ok, err := s.activityByTime(ctx, "acme", filters["day 1 not_delivered"], 100)
	s.activityRead = nil
	if err != nil || !ok || reads != 2 {
		t.Fatalf("a batch stored during the read: answered by windows %v after %d reads (%v), want true after 2", ok, reads, err)
	}
	if scanned := scanActivity(t, s, "acme", filters["day 1 not_delivered"], 100); !slices.Equal(got, scanned) || len(got) == 0 || got[0].MsgID != "mI" {
		t.Errorf("a batch stored during the read:\n got %+v\nscan %+v", got, scanned)
	}
	update()
	t.Run("replayed and built", func(t *testing.T) {
		check(t, true, map[string][]string{"day 1 not_delivered": {"mI", "mG", "mF", "mB", "mC"}})
	})
}

// scanActivity is ActivityMessages with the prefilter that reads all the
// account's events (no message_index, no windows): the reference.
func scanActivity(t *testing.T, s *Store, account string, f *analytics.ActivityFilter, limit int) []analytics.ActivityMessage {
	t.Helper()
	sql, args, err := activityMessagesSQL(account, f, limit)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []analytics.ActivityMessage
	for rows.Next() {
		var m analytics.ActivityMessage
		var norm string
		if err := rows.Scan(&m.MsgID, &m.FromEmail, &m.Subject, &m.ToEmail, &norm, &m.Status, &m.Opens, &m.Clicks, &m.LastEventTime); err != nil {
			t.Fatal(err)
		}
		m.LastEventTime = m.LastEventTime.UTC()
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The parts activityByTime tries end at the range's end and grow to the
// whole range; without a limit (or a range too short to split) only the
// whole range.
func TestSliceStarts(t *testing.T) {
	for _, c := range []struct {
		from, to uint32
		limit    int
		want     []uint32
	}{
		{0, 86399, 1000, []uint32{86399 - 3599, 86399 - 21599, 0}},
		{100, 100 + 86400, 10, []uint32{100 + 86400 - 3600, 100 + 86400 - 21600, 100}},
		{0, 86399, 0, []uint32{0}},
		{50, 50, 10, []uint32{50}},
		{50, 52, 10, []uint32{50}},
		{0, 5, 10, []uint32{4, 0}},
	} {
		if got := sliceStarts(c.from, c.to, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("sliceStarts(%d, %d, %d) = %v, want %v", c.from, c.to, c.limit, got, c.want)
		}
	}
}
