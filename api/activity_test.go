package api

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ts(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }

func eq(field, v string) *ActivityFilter {
	return &ActivityFilter{Op: FilterEq, Field: field, Value: v}
}

func TestParseActivityQuery(t *testing.T) {
	between := &ActivityFilter{Op: FilterBetween, Field: "last_event_time", From: ts("2026-11-01T00:00:00Z"), To: ts("2026-11-02T00:00:00Z")}
	good := []struct {
		q    string
		want *ActivityFilter
	}{
		{`to_email="A@Example.com"`, eq("to_email", "a@example.com")},
		{` from_email = "x@y.z" `, eq("from_email", "x@y.z")},
		{`msg_id="abc.filter0001.1.0"`, eq("msg_id", "abc.filter0001.1.0")},
		{`status="not_delivered"`, eq("status", "not_delivered")},
		{`last_event_time BETWEEN TIMESTAMP "2026-11-01T00:00:00Z" AND TIMESTAMP "2026-11-02T00:00:00Z"`, between},
		{`last_event_time between timestamp "2026-11-01T01:00:00+01:00" and timestamp "2026-11-02T00:00:00Z"`, between},
		{`status="delivered" AND to_email="a@b.c"`, &ActivityFilter{Op: FilterAnd, Args: []*ActivityFilter{eq("status", "delivered"), eq("to_email", "a@b.c")}}},
		// AND binds tighter than OR.
		{`msg_id="1" OR msg_id="2" AND status="processed" OR msg_id="3"`, &ActivityFilter{Op: FilterOr, Args: []*ActivityFilter{
			eq("msg_id", "1"), {Op: FilterAnd, Args: []*ActivityFilter{eq("msg_id", "2"), eq("status", "processed")}}, eq("msg_id", "3")}}},
		{`(msg_id="1" OR msg_id="2") AND status="processed"`, &ActivityFilter{Op: FilterAnd, Args: []*ActivityFilter{
			{Op: FilterOr, Args: []*ActivityFilter{eq("msg_id", "1"), eq("msg_id", "2")}}, eq("status", "processed")}}},
		{`to_email="x') OR 1=1 --"`, eq("to_email", "x') or 1=1 --")},
		{`msg_id="a\"b\\c"`, eq("msg_id", `a"b\c`)},
		{`msg_id="'; DROP TABLE events; --"`, eq("msg_id", "'; DROP TABLE events; --")},
	}
	for _, c := range good {
		got, err := ParseActivityQuery(c.q)
		if err != nil {
			t.Errorf("%s: %v", c.q, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(c.want)
			t.Errorf("%s:\n got %s\nwant %s", c.q, g, w)
		}
	}
	bad := []string{
		``, `   `, `to_email`, `to_email=`, `to_email="a`, `to_email='a'`, `to_email=a`, `bad_field="x"`,
		`status="sent"`, `to_email="a" AND`, `to_email="a" OR OR msg_id="b"`, `(to_email="a"`, `to_email="a")`,
		`to_email="a" msg_id="b"`, `to_email="a" ; DROP TABLE events`, `to_email="a" -- comment`,
		`last_event_time="2026-11-01T00:00:00Z"`, `last_event_time BETWEEN "2026-11-01T00:00:00Z" AND TIMESTAMP "2026-11-02T00:00:00Z"`,
		`last_event_time BETWEEN TIMESTAMP "yesterday" AND TIMESTAMP "2026-11-02T00:00:00Z"`,
		`last_event_time BETWEEN TIMESTAMP "2026-11-03T00:00:00Z" AND TIMESTAMP "2026-11-02T00:00:00Z"`,
		`msg_id="a\x"`, `1=1`, `msg_id!="a"`, strings.Repeat("(", 40) + `msg_id="a"` + strings.Repeat(")", 40),
		strings.Repeat(`msg_id="a" OR `, 70) + `msg_id="a"`, "msg_id=\"\xff\"", `msg_id="` + strings.Repeat("a", 5000) + `"`,
	}
	for _, q := range bad {
		_, err := ParseActivityQuery(q)
		var e *Error
		if err == nil {
			t.Errorf("%q: parsed, want an error", q)
		} else if e, _ = err.(*Error); e == nil || e.Code != EInvalid || e.Field != "query" {
			t.Errorf("%q: %v, want EInvalid on field query", q, err)
		}
	}
}

type fakeActivity struct {
	account string
	filter  *ActivityFilter
	limit   int
	msgs    []ActivityMessage
	events  map[string][]ActivityEvent
}

func (f *fakeActivity) ActivityMessages(ctx context.Context, account string, fl *ActivityFilter, limit int) ([]ActivityMessage, error) {
	f.account, f.filter, f.limit = account, fl, limit
	return f.msgs, nil
}

func (f *fakeActivity) ActivityEvents(ctx context.Context, account, msgID string) ([]ActivityEvent, error) {
	f.account = account
	return f.events[account+"/"+msgID], nil
}

func TestActivityRoutes(t *testing.T) {
	k, key := testKey(t, "acme", false)
	fa := &fakeActivity{
		msgs: []ActivityMessage{{MsgID: "m1", FromEmail: "f@x.io", Subject: "Hi", ToEmail: "a@b.c", Status: "delivered", Opens: 2, Clicks: 1, LastEventTime: ts("2026-11-01T10:00:00Z")}},
		events: map[string][]ActivityEvent{"acme/m1": {
			{Event: "processed", Time: ts("2026-11-01T09:00:00Z"), Email: "a@b.c", FromEmail: "f@x.io", Subject: "Hi", AsmGroupID: 3},
			{Event: "deferred", Time: ts("2026-11-01T09:01:00Z"), Attempt: 2, Reason: "421 try later", BounceType: "soft"},
			{Event: "delivered", Time: ts("2026-11-01T09:05:00Z")},
			{Event: "open", Time: ts("2026-11-01T10:00:00Z"), UserAgent: "Mozilla"},
			{Event: "click", Time: ts("2026-11-01T10:00:00Z"), URL: "https://x.io/"},
		}},
	}
	h := NewServer(Config{Store: &fakeStore{}, Activity: fa, Keys: fakeKeys{key}})

	rec := do(t, h, "GET", "/v3/messages?query="+url.QueryEscape(`to_email="A@b.c" AND status="delivered"`), k, "")
	if rec.Code != 200 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	want := `{"messages":[{"from_email":"f@x.io","msg_id":"m1","subject":"Hi","to_email":"a@b.c","status":"delivered","opens_count":2,"clicks_count":1,"last_event_time":"2026-11-01T10:00:00Z"}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("list body\n got %s\nwant %s", got, want)
	}
	if fa.account != "acme" || fa.limit != 10 || fa.filter == nil || fa.filter.Op != FilterAnd {
		t.Errorf("store saw account %q limit %d filter %+v", fa.account, fa.limit, fa.filter)
	}
	if rec := do(t, h, "GET", "/v3/messages?limit=1000&query="+url.QueryEscape(`msg_id="m1"`), k, ""); rec.Code != 200 || fa.limit != 1000 {
		t.Errorf("limit 1000: %d, store limit %d", rec.Code, fa.limit)
	}
	for _, c := range []struct{ q, field string }{
		{"limit=0&query=" + url.QueryEscape(`msg_id="m1"`), "limit"},
		{"limit=1001&query=" + url.QueryEscape(`msg_id="m1"`), "limit"},
		{"", "query"},
		{"query=" + url.QueryEscape(`bad_field="x"`), "query"},
		{"query=" + url.QueryEscape(`to_email="x') OR 1=1 --`), "query"},
	} {
		rec := do(t, h, "GET", "/v3/messages?"+c.q, k, "")
		field, msg := sendGridError(t, rec)
		if rec.Code != 400 || field == nil || *field != c.field {
			t.Errorf("%s: %d field %v %q, want 400 on %s", c.q, rec.Code, field, msg, c.field)
		}
	}

	rec = do(t, h, "GET", "/v3/messages/m1", k, "")
	if rec.Code != 200 {
		t.Fatalf("detail: %d %s", rec.Code, rec.Body)
	}
	want = `{"from_email":"f@x.io","msg_id":"m1","subject":"Hi","to_email":"a@b.c","status":"delivered","asm_group_id":3,"events":[` +
		`{"event_name":"processed","processed":"2026-11-01T09:00:00Z"},` +
		`{"event_name":"deferred","processed":"2026-11-01T09:01:00Z","reason":"421 try later","attempt_num":2},` +
		`{"event_name":"delivered","processed":"2026-11-01T09:05:00Z"},` +
		`{"event_name":"opened","processed":"2026-11-01T10:00:00Z","http_user_agent":"Mozilla"},` +
		`{"event_name":"clicked","processed":"2026-11-01T10:00:00Z","url":"https://x.io/"}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("detail body\n got %s\nwant %s", got, want)
	}
	rec = do(t, h, "GET", "/v3/messages/nope", k, "")
	if field, _ := sendGridError(t, rec); rec.Code != 404 || field == nil || *field != "message_id" {
		t.Errorf("unknown message: %d field %v", rec.Code, field)
	}

	// Without an Activity the routes answer 404.
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{key}})
	if rec := do(t, h, "GET", "/v3/messages?query="+url.QueryEscape(`msg_id="m1"`), k, ""); rec.Code != 404 {
		t.Errorf("no activity: %d", rec.Code)
	}
}

func TestMessageStatus(t *testing.T) {
	for _, c := range []struct {
		evs  []string
		want string
	}{
		{nil, "processed"}, {[]string{"processed", "deferred"}, "processed"},
		{[]string{"processed", "delivered"}, "delivered"}, {[]string{"processed", "open"}, "delivered"},
		{[]string{"processed", "delivered", "bounce"}, "not_delivered"}, {[]string{"processed", "dropped"}, "not_delivered"},
	} {
		if got := MessageStatus(c.evs); got != c.want {
			t.Errorf("%v: %s, want %s", c.evs, got, c.want)
		}
	}
}
