package clickhouse

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

func aEq(field, v string) *analytics.ActivityFilter {
	return &analytics.ActivityFilter{Op: analytics.FilterEq, Field: field, Value: v}
}

func aBetween(from, to string) *analytics.ActivityFilter {
	f, _ := time.Parse(time.RFC3339, from)
	t, _ := time.Parse(time.RFC3339, to)
	return &analytics.ActivityFilter{Op: analytics.FilterBetween, Field: "last_event_time", From: f, To: t}
}

func aOp(op string, args ...*analytics.ActivityFilter) *analytics.ActivityFilter {
	return &analytics.ActivityFilter{Op: op, Args: args}
}

// activityFragment is the only vocabulary a compiled filter may use.
var activityFragment = regexp.MustCompile(`^(?:\(|\)| AND | OR | = | >= | <= |\?|a_to_norm|lower\(a_from\)|a_msg|a_status|a_last|toDateTime\(\?\))*$`)

func TestActivitySQLHasNoUserText(t *testing.T) {
	evil := []string{"x') OR 1=1 --", "'; DROP TABLE events; --", `a"b\c`, "?", "a_msg", "1 = 1) OR (1 = 1", "ünï"}
	var conds []*analytics.ActivityFilter
	for _, v := range evil {
		conds = append(conds, aEq("to_email", v), aEq("from_email", v), aEq("msg_id", v), aEq("status", v))
	}
	f := aOp(analytics.FilterOr, aOp(analytics.FilterAnd, conds...), aBetween("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"))
	sql, args, err := activityMessagesSQL("acme' OR 1=1", f, 5)
	if err != nil {
		t.Fatal(err)
	}
	prefix, rest, ok := strings.Cut(sql, " HAVING ")
	cond, suffix, ok2 := strings.Cut(rest, " ORDER BY ")
	if !ok || !ok2 || prefix+" HAVING "+activityMatchAll+" ORDER BY "+suffix != qActivityMessages.SQL {
		t.Fatalf("SQL is not the registered query with a condition:\n%s", sql)
	}
	if !activityFragment.MatchString(cond) {
		t.Errorf("condition uses more than fixed columns, operators and ?: %s", cond)
	}
	if n := strings.Count(sql, "?"); n != len(args) {
		t.Errorf("%d placeholders, %d args", n, len(args))
	}
	for _, v := range evil {
		if strings.Contains(cond, v) && activityFragment.FindString(v) == "" {
			t.Errorf("user text %q in the SQL", v)
		}
		if !slices.Contains(args, any(v)) {
			t.Errorf("%q is not a bound argument", v)
		}
	}
	if args[0] != "acme' OR 1=1" || args[len(args)-1] != uint64(5) {
		t.Errorf("args %v: account first, limit last", args)
	}
	if _, _, err := compileActivity(aEq("subject", "x"), nil); err == nil {
		t.Error("unknown field compiled")
	}
	if _, _, err := compileActivity(&analytics.ActivityFilter{Op: "not"}, nil); err == nil {
		t.Error("unknown operator compiled")
	}
}

func TestActivityOnClickHouse(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).Unix()
	var rows []pipeline.Row
	n := 0
	add := func(acct, msg, email, event string, at int64, mod func(*pipeline.Row)) {
		n++
		r := pipeline.Row{Event: schemas.Event{
			Topic: "t", Offset: int64(n), AccountID: acct, Event: schemas.EventType(event), Email: email,
			EmailNorm: strings.ToLower(email), Domain: email[strings.LastIndex(email, "@")+1:], AddressValid: true,
			Timestamp: at, SGEventID: msg + "-" + event + "-" + time.Unix(at, 0).Format("150405"), SGMessageID: msg,
			FromEmail: "News@Shop.io", Subject: "Subject " + msg,
		}}
		if mod != nil {
			mod(&r)
		}
		rows = append(rows, r)
	}
	h := int64(3600)
	// m1: delivered, opened twice (one open resent), clicked, on day 1.
	add("acme", "m1", "Ann@Gmail.com", "processed", base, nil)
	add("acme", "m1", "Ann@Gmail.com", "delivered", base+60, nil)
	add("acme", "m1", "Ann@Gmail.com", "open", base+h, func(r *pipeline.Row) { r.UserAgent = "Mozilla" })
	add("acme", "m1", "Ann@Gmail.com", "open", base+2*h, nil)
	add("acme", "m1", "Ann@Gmail.com", "click", base+2*h+1, func(r *pipeline.Row) { r.URL = "https://shop.io/x" })
	rows = append(rows, rows[len(rows)-2]) // the producer resends the second open
	rows[len(rows)-1].Offset += 1000
	// m2: deferred then bounced (not_delivered), day 1.
	add("acme", "m2", "bob@yahoo.com", "processed", base+10, nil)
	add("acme", "m2", "bob@yahoo.com", "deferred", base+70, func(r *pipeline.Row) { r.Attempt, r.Reason = 1, "421 later" })
	add("acme", "m2", "bob@yahoo.com", "bounce", base+3*h, func(r *pipeline.Row) {
		r.Type, r.Reason, r.Bounce = "bounce", "550 5.1.1 unknown", &enrich.Result{BounceType: enrich.Hard}
	})
	// m3: only processed (processed), day 2.
	add("acme", "m3", "ann@gmail.com", "processed", base+26*h, func(r *pipeline.Row) { r.FromEmail = "other@shop.io" })
	// m4: dropped, day 3.
	add("acme", "m4", "carl@example.org", "processed", base+50*h, nil)
	add("acme", "m4", "carl@example.org", "dropped", base+50*h, func(r *pipeline.Row) { r.Reason = "Bounced Address" })
	// Another account's message to the same recipient.
	add("other", "m9", "ann@gmail.com", "delivered", base+5*h, nil)
	add("other", "m1", "ann@gmail.com", "delivered", base+5*h, nil)
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}

	ids := func(ms []analytics.ActivityMessage) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.MsgID)
		}
		return out
	}
	day1 := aBetween("2026-11-01T00:00:00Z", "2026-11-01T23:59:59Z")
	for _, c := range []struct {
		name    string
		account string
		f       *analytics.ActivityFilter
		limit   int
		want    []string
	}{
		{"all", "acme", nil, 10, []string{"m4", "m3", "m2", "m1"}},
		{"to_email (case-insensitive)", "acme", aEq("to_email", "ann@gmail.com"), 10, []string{"m3", "m1"}},
		{"from_email", "acme", aEq("from_email", "other@shop.io"), 10, []string{"m3"}},
		{"msg_id", "acme", aEq("msg_id", "m2"), 10, []string{"m2"}},
		{"status delivered", "acme", aEq("status", "delivered"), 10, []string{"m1"}},
		{"status not_delivered", "acme", aEq("status", "not_delivered"), 10, []string{"m4", "m2"}},
		{"status processed", "acme", aEq("status", "processed"), 10, []string{"m3"}},
		{"time range", "acme", day1, 10, []string{"m2", "m1"}},
		{"time range inclusive", "acme", aBetween("2026-11-03T10:00:00Z", "2026-11-03T10:00:00Z"), 10, []string{"m4"}},
		{"and", "acme", aOp(analytics.FilterAnd, aEq("to_email", "ann@gmail.com"), day1), 10, []string{"m1"}},
		{"or", "acme", aOp(analytics.FilterOr, aEq("msg_id", "m1"), aEq("status", "processed")), 10, []string{"m3", "m1"}},
		{"and binds tighter", "acme", aOp(analytics.FilterOr, aEq("msg_id", "m4"), aOp(analytics.FilterAnd, aEq("to_email", "ann@gmail.com"), aEq("status", "delivered"))), 10, []string{"m4", "m1"}},
		{"limit", "acme", nil, 2, []string{"m4", "m3"}},
		{"injection is a value", "acme", aEq("to_email", "x') OR 1=1 --"), 10, nil},
		{"injection in msg_id", "acme", aEq("msg_id", "m1' OR '1'='1"), 10, nil},
		{"tenancy", "other", aEq("to_email", "ann@gmail.com"), 10, []string{"m1", "m9"}},
		{"unknown account", "nobody", nil, 10, nil},
	} {
		ms, err := s.ActivityMessages(ctx, c.account, c.f, c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := ids(ms); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		// The same answer without message_index (the scanning prefilter).
		sql, args, err := activityMessagesSQL(c.account, c.f, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.conn.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: scan: %v", c.name, err)
		}
		var scanned []analytics.ActivityMessage
		for rows.Next() {
			var m analytics.ActivityMessage
			var norm string
			if err := rows.Scan(&m.MsgID, &m.FromEmail, &m.Subject, &m.ToEmail, &norm, &m.Status, &m.Opens, &m.Clicks, &m.LastEventTime); err != nil {
				t.Fatal(err)
			}
			m.LastEventTime = m.LastEventTime.UTC()
			scanned = append(scanned, m)
		}
		rows.Close()
		if !slices.Equal(ms, scanned) {
			t.Errorf("%s: with message_index %+v\nscanning the events %+v", c.name, ms, scanned)
		}
	}

	ms, err := s.ActivityMessages(ctx, "acme", aEq("msg_id", "m1"), 10)
	if err != nil || len(ms) != 1 {
		t.Fatalf("m1: %v %v", ms, err)
	}
	want := analytics.ActivityMessage{MsgID: "m1", FromEmail: "News@Shop.io", Subject: "Subject m1", ToEmail: "Ann@Gmail.com",
		Status: "delivered", Opens: 2, Clicks: 1, LastEventTime: time.Unix(base+2*h+1, 0).UTC()}
	if ms[0] != want {
		t.Errorf("m1:\n got %+v\nwant %+v", ms[0], want)
	}

	evs, err := s.ActivityEvents(ctx, "acme", "m2")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range evs {
		names = append(names, e.Event)
	}
	if !slices.Equal(names, []string{"processed", "deferred", "bounce"}) {
		t.Fatalf("m2 events %v", names)
	}
	if d, b := evs[1], evs[2]; d.Attempt != 1 || d.Reason != "421 later" || b.BounceType != "hard" || b.Type != "bounce" ||
		!b.Time.Equal(time.Unix(base+3*h, 0)) || b.Email != "bob@yahoo.com" || b.Subject != "Subject m2" {
		t.Errorf("m2 events %+v", evs)
	}
	if evs, err := s.ActivityEvents(ctx, "acme", "m1"); err != nil || len(evs) != 5 {
		t.Errorf("m1: %d events (resent open once), %v", len(evs), err)
	}
	for _, c := range [][2]string{{"other", "m2"}, {"acme", "m9"}, {"acme", "nope"}, {"acme", "m1' OR '1'='1"}} {
		if evs, err := s.ActivityEvents(ctx, c[0], c[1]); err != nil || len(evs) != 0 {
			t.Errorf("%s/%s: %d events, %v; want none", c[0], c[1], len(evs), err)
		}
	}
}
