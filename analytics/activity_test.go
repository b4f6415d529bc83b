package analytics

import (
	"encoding/json"
	"errors"
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
		var e *QueryError
		if err == nil {
			t.Errorf("%q: parsed, want an error", q)
		} else if !errors.As(err, &e) || e.Msg == "" {
			t.Errorf("%q: %v, want a *QueryError saying what is wrong (the API answers it as 400 on field query)", q, err)
		}
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
