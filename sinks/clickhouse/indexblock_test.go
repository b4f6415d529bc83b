package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
)

// TestIndexStringsFound: message_index's String columns are written
// straight into this driver version's columns (see TestDriverStringsFound).
func TestIndexStringsFound(t *testing.T) {
	s := openTestStore(t)
	b, err := s.conn.PrepareBatch(context.Background(), qInsertMessageIndex.SQL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if driverColStrs(b, indexStrings[:], indexColumnIndex) == nil {
		t.Fatal("the driver's String columns were not found: clickhouse-go's column.String changed; update colStr")
	}
}

// TestMessageIndexRoundTrip writes two batches with one indexBlock (the
// second reuses the first's buffers), by both paths, and reads every row
// back: one "msg" window per message and partition, one "to" window per
// recipient of the message, each spanning its rows; none for a row
// without a message id.
func TestMessageIndexRoundTrip(t *testing.T) {
	row := func(part int, account, email, msg string, ts int64) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Partition: part, AccountID: account, EmailNorm: email, SGMessageID: msg, Timestamp: ts}}
	}
	for _, viaAppend := range []bool{false, true} {
		t.Run(fmt.Sprintf("driver_append=%v", viaAppend), func(t *testing.T) {
			viaDriverAppend = viaAppend
			t.Cleanup(func() { viaDriverAppend = false })
			s := openTestStore(t)
			ctx := context.Background()
			var b indexBlock
			first := []pipeline.Row{
				row(0, "acme", "a@x.test", "m1", 100), row(0, "acme", "a@x.test", "m1", 50),
				row(0, "acme", "b@x.test", "m2", 70), row(0, "acme", "c@x.test", "", 80),
				row(0, "acme", "e@x.test", "m1", 120), row(0, "acme", "e@x.test", "m1", 20),
			}
			second := []pipeline.Row{row(1, "acme", "a@x.test", "m1", 200), row(1, "beta", "d@x.test", "m3", 30)}
			if err := s.writeMessageIndex(ctx, &b, first); err != nil {
				t.Fatal(err)
			}
			if err := s.writeMessageIndex(ctx, &b, second[:1], second[1:]); err != nil {
				t.Fatal(err)
			}
			if b.rows() != 0 || len(b.byMsg) != 0 || len(b.byTo) != 0 {
				t.Errorf("the block still holds %d rows after its inserts", b.rows())
			}
			q, err := s.conn.Query(ctx, "SELECT kafka_partition, account_id, kind, key, sg_message_id, toUInt32(first), toUInt32(last) FROM message_index")
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var got []string
			for q.Next() {
				var part, first, last uint32
				var account, kind, key, msg string
				if err := q.Scan(&part, &account, &kind, &key, &msg, &first, &last); err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%d %s %s %s %s %d-%d", part, account, kind, key, msg, first, last))
			}
			if err := q.Err(); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			want := []string{
				"0 acme msg m1 m1 20-120", "0 acme msg m2 m2 70-70",
				"0 acme to a@x.test m1 50-100", "0 acme to b@x.test m2 70-70", "0 acme to e@x.test m1 20-120",
				"1 acme msg m1 m1 200-200", "1 acme to a@x.test m1 200-200",
				"1 beta msg m3 m3 30-30", "1 beta to d@x.test m3 30-30",
			}
			if !slices.Equal(got, want) {
				t.Errorf("message_index:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
