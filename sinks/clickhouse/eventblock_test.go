package clickhouse

import (
	"context"
	"fmt"
	"testing"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestDriverStringsFound: the events insert writes its String columns
// straight into this driver version's columns; if an upgrade changes
// their layout, this fails (the inserts still work, slower).
func TestDriverStringsFound(t *testing.T) {
	s := openTestStore(t)
	b, err := s.conn.PrepareBatch(context.Background(), qInsertEvents.SQL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if driverStrings(b) == nil {
		t.Fatal("the driver's String columns were not found: clickhouse-go's column.String changed; update driverStrings")
	}
}

// TestEventsRoundTrip writes rows with every field set, more than a chunk
// of them, in two inserts (so the second reuses the first's buffers), by
// both paths, and reads every column back.
func TestEventsRoundTrip(t *testing.T) {
	for _, viaAppend := range []bool{false, true} {
		t.Run(fmt.Sprintf("driver_append=%v", viaAppend), func(t *testing.T) {
			viaDriverAppend = viaAppend
			t.Cleanup(func() { viaDriverAppend = false })
			s := openTestStore(t)
			ctx := context.Background()
			var all []pipeline.Row
			for part, n := range []int{eventChunk + 7, 300} {
				rows := make([]pipeline.Row, n)
				for i := range rows {
					rows[i] = testRow(part, i)
				}
				if err := s.WriteEvents(ctx, rows); err != nil {
					t.Fatal(err)
				}
				all = append(all, rows...)
			}
			q, err := s.conn.Query(ctx, "SELECT kafka_topic, kafka_partition, kafka_offset, msg_index, account_id, event, type, toUInt32(timestamp), "+
				"email, email_norm, domain, provider, address_valid, sg_event_id, event_id_derived, sg_message_id, smtp_id, categories, "+
				"reason, status, response, attempt, bounce_type, bounce_classification, reason_code, rule, producer_classification, "+
				"ip, tls, url, useragent, asm_group_id, from_email, subject, custom_args, derived FROM events ORDER BY kafka_partition, kafka_offset")
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			i := 0
			for ; q.Next(); i++ {
				var (
					g                               pipeline.Row
					part, index, ts, attempt        uint32
					offset                          uint64
					valid, derivedID, tls, derived  uint8
					event, btype, class, code, rule string
				)
				if err := q.Scan(&g.Topic, &part, &offset, &index, &g.AccountID, &event, &g.Type, &ts,
					&g.Email, &g.EmailNorm, &g.Domain, &g.Provider, &valid, &g.SGEventID, &derivedID, &g.SGMessageID, &g.SMTPID, &g.Categories,
					&g.Reason, &g.Status, &g.Response, &attempt, &btype, &class, &code, &rule, &g.BounceClassification,
					&g.IP, &tls, &g.URL, &g.UserAgent, &g.ASMGroupID, &g.FromEmail, &g.Subject, &g.Custom, &derived); err != nil {
					t.Fatal(err)
				}
				if i >= len(all) {
					continue
				}
				w := all[i]
				g.Partition, g.Offset, g.Index, g.Timestamp, g.Attempt = int(part), int64(offset), int(index), int64(ts), attempt
				g.Event.Event, g.AddressValid, g.EventIDDerived, g.TLS, g.Derived = schemas.EventType(event), valid == 1, derivedID == 1, tls == 1, derived == 1
				if w.Bounce != nil {
					g.Bounce = &enrich.Result{BounceType: enrich.BounceType(btype), Classification: enrich.Classification(class), Reason: enrich.Reason(code), Rule: rule}
				} else if btype+class+code+rule != "" {
					t.Errorf("row %d: bounce columns %q %q %q %q for a row without a bounce", i, btype, class, code, rule)
				}
				if len(w.Categories) == 0 && len(g.Categories) == 0 {
					g.Categories = w.Categories
				}
				if fmt.Sprint(g.Event) != fmt.Sprint(w.Event) || g.Provider != w.Provider || g.Derived != w.Derived ||
					(w.Bounce != nil && *g.Bounce != *w.Bounce) {
					t.Fatalf("row %d:\n got %+v %+v\nwant %+v %+v", i, g, g.Bounce, w, w.Bounce)
				}
			}
			if i != len(all) {
				t.Errorf("%d rows read back, want %d", i, len(all))
			}
		})
	}
}

// testRow is row i of partition part, every field set and distinct.
func testRow(part, i int) pipeline.Row {
	v := func(f string) string { return fmt.Sprintf("%s-%d-%d", f, part, i) }
	r := pipeline.Row{Event: schemas.Event{
		Topic: "t" + fmt.Sprint(part), Partition: part, Offset: int64(i), Index: i % 3,
		AccountID: v("acct"), Event: schemas.EventDeferred, Type: v("type"),
		Email: v("Email"), EmailNorm: v("email"), Domain: v("domain"), AddressValid: i%2 == 0,
		Timestamp: 1764201600 + int64(i), SGEventID: v("id"), EventIDDerived: i%3 == 0,
		SGMessageID: v("msg"), SMTPID: v("smtp"), Reason: v("reason"), Status: v("status"),
		Response: v("response"), Attempt: uint32(i), BounceClassification: v("pc"), IP: v("ip"),
		TLS: i%4 == 0, URL: v("url"), UserAgent: v("ua"), ASMGroupID: int64(i * 7),
		FromEmail: v("from"), Subject: v("subject"), Custom: v("custom"),
	}, Provider: v("provider"), Derived: i%5 == 0}
	if i%2 == 1 {
		r.Categories = []string{v("c1"), v("c2")}
	}
	if i%3 == 1 {
		r.Bounce = &enrich.Result{BounceType: enrich.Soft, Classification: enrich.Classification(v("class")), Reason: enrich.Reason(v("code")), Rule: v("rule")}
	}
	return r
}
