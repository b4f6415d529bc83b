package api

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

func ts(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }

type fakeActivity struct {
	account string
	filter  *analytics.ActivityFilter
	limit   int
	msgs    []analytics.ActivityMessage
	events  map[string][]analytics.ActivityEvent
}

func (f *fakeActivity) ActivityMessages(ctx context.Context, account string, fl *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, error) {
	f.account, f.filter, f.limit = account, fl, limit
	return f.msgs, nil
}

func (f *fakeActivity) ActivityEvents(ctx context.Context, account, msgID string) ([]analytics.ActivityEvent, error) {
	f.account = account
	return f.events[account+"/"+msgID], nil
}

func TestActivityRoutes(t *testing.T) {
	k, key := testKey(t, "acme", false)
	fa := &fakeActivity{
		msgs: []analytics.ActivityMessage{{MsgID: "m1", FromEmail: "f@x.io", Subject: "Hi", ToEmail: "a@b.c", Status: "delivered", Opens: 2, Clicks: 1, LastEventTime: ts("2026-11-01T10:00:00Z")}},
		events: map[string][]analytics.ActivityEvent{"acme/m1": {
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
	if fa.account != "acme" || fa.limit != 10 || fa.filter == nil || fa.filter.Op != analytics.FilterAnd {
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
