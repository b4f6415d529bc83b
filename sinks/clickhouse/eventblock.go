package clickhouse

import (
	"context"
	"fmt"
	"reflect"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/pipeline"
)

// The events insert is the worker's hottest path after decoding, and the
// driver's way of taking columns ([]string per column, copied into a
// column that grows by doubling, new for every insert) was a third of the
// worker's CPU and most of its garbage. So the String columns are written
// straight into the driver's own ch-go columns (found once per insert by
// reflection; see driverStrings), whose buffers are kept from one insert to
// the next: after the first few inserts nothing grows. If a driver version
// changes that layout, the rows go through the driver's Append as before.

// eventStrings are the events table's String columns and how each reads a
// row; the rest of eventColumns are set in eventBlock.fill.
var eventStrings = [...]struct {
	name string
	get  func(r *pipeline.Row) string
}{
	{"kafka_topic", func(r *pipeline.Row) string { return r.Topic }},
	{"account_id", func(r *pipeline.Row) string { return r.AccountID }},
	{"event", func(r *pipeline.Row) string { return string(r.Event.Event) }},
	{"type", func(r *pipeline.Row) string { return r.Type }},
	{"email", func(r *pipeline.Row) string { return r.Email }},
	{"email_norm", func(r *pipeline.Row) string { return r.EmailNorm }},
	{"domain", func(r *pipeline.Row) string { return r.Domain }},
	{"provider", func(r *pipeline.Row) string { return r.Provider }},
	{"sg_event_id", func(r *pipeline.Row) string { return r.SGEventID }},
	{"sg_message_id", func(r *pipeline.Row) string { return r.SGMessageID }},
	{"smtp_id", func(r *pipeline.Row) string { return r.SMTPID }},
	{"reason", func(r *pipeline.Row) string { return r.Reason }},
	{"status", func(r *pipeline.Row) string { return r.Status }},
	{"response", func(r *pipeline.Row) string { return r.Response }},
	{"bounce_type", func(r *pipeline.Row) string { return bounceField(r, 0) }},
	{"bounce_classification", func(r *pipeline.Row) string { return bounceField(r, 1) }},
	{"reason_code", func(r *pipeline.Row) string { return bounceField(r, 2) }},
	{"rule", func(r *pipeline.Row) string { return bounceField(r, 3) }},
	{"decided_by", func(r *pipeline.Row) string { return bounceField(r, 4) }},
	{"producer_classification", func(r *pipeline.Row) string { return r.BounceClassification }},
	{"ip", func(r *pipeline.Row) string { return r.IP }},
	{"url", func(r *pipeline.Row) string { return r.URL }},
	{"useragent", func(r *pipeline.Row) string { return r.UserAgent }},
	{"from_email", func(r *pipeline.Row) string { return r.FromEmail }},
	{"subject", func(r *pipeline.Row) string { return r.Subject }},
	{"custom_args", func(r *pipeline.Row) string { return r.Custom }},
	{"ua_browser", func(r *pipeline.Row) string { return r.Agent.Browser }},
	{"ua_client", func(r *pipeline.Row) string { return r.Agent.Client }},
	{"ua_device", func(r *pipeline.Row) string { return r.Agent.Device }},
	{"geo_country", func(r *pipeline.Row) string { return r.Place.Country }},
	{"geo_region", func(r *pipeline.Row) string { return r.Place.Region }},
}

func bounceField(r *pipeline.Row, i int) string {
	b := r.Bounce
	if b == nil {
		return ""
	}
	switch i {
	case 0:
		return string(b.BounceType)
	case 1:
		return string(b.Classification)
	case 2:
		return string(b.Reason)
	case 3:
		return b.Rule
	}
	return b.DecidedBy
}

// eventOthers are the other columns, in the order eventBlock.others
// returns their slices.
var eventOthers = [...]string{
	"ingest_date", "ingested_at", "kafka_partition", "kafka_offset", "msg_index", "timestamp",
	"address_valid", "event_id_derived", "categories", "attempt", "tls", "asm_group_id", "derived",
	"source_partition", "source_offset",
}

// eventColumnIndex maps a column name to its position in the INSERT.
var eventColumnIndex = func() map[string]int {
	m := map[string]int{}
	for i, c := range eventColumns {
		m[c] = i
	}
	if len(m) != len(eventStrings)+len(eventOthers) {
		panic("clickhouse: eventStrings and eventOthers do not cover eventColumns")
	}
	for _, c := range eventStrings {
		if _, ok := m[c.name]; !ok {
			panic("clickhouse: unknown events column " + c.name)
		}
	}
	for _, c := range eventOthers {
		if _, ok := m[c]; !ok {
			panic("clickhouse: unknown events column " + c)
		}
	}
	return m
}()

// eventChunk is how many rows eventBlock's slices hold at a time: the
// driver's columns take them chunk by chunk, so the slices stay small.
const eventChunk = 4096

// eventBlock builds events inserts; only one at a time (a groupCommit
// sends one insert at a time).
type eventBlock struct {
	// index builds the message_index insert beside the events'.
	index indexBlock
	// kept are the String columns' buffers between inserts.
	kept [len(eventStrings)]proto.ColStr
	// strs are the String columns' values of a chunk when the driver's
	// columns cannot be reached.
	strs [len(eventStrings)][]string

	dates, ats, stamps               []time.Time
	parts, indexes, attempts         []uint32
	offsets, srcOffsets              []uint64
	srcParts                         []uint32
	valids, derivedIDs, tlss, derivs []uint8
	groups                           []int64
	cats                             [][]string
}

// noCategories is the categories of an event without any (the column
// wants an empty array, not a nil one).
var noCategories = []string{}

// resize returns s with length n, reusing its array when it is big enough.
func resize[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n)
}

// eventStringNames are eventStrings' column names.
var eventStringNames = func() []string {
	out := make([]string, len(eventStrings))
	for k, c := range eventStrings {
		out[k] = c.name
	}
	return out
}()

// driverStrings returns the ch-go columns inside the batch's String
// columns, in eventStrings order, or nil when the driver's column type is
// not the one this was written for (clickhouse-go v2's column.String
// holding a proto.ColStr named col).
func driverStrings(b driver.Batch) []*proto.ColStr {
	return driverColStrs(b, eventStringNames, eventColumnIndex)
}

var colStrType = reflect.TypeFor[proto.ColStr]()

func colStr(c column.Interface) *proto.ColStr {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("col")
	if !f.IsValid() || f.Type() != colStrType {
		return nil
	}
	return (*proto.ColStr)(unsafe.Pointer(f.UnsafeAddr()))
}

// viaDriverAppend makes insertEvents take the driver's Append path (for
// tests of that path).
var viaDriverAppend = false

// insertEvents sends the rows of parts as one block.
func (s *Store) insertEvents(ctx context.Context, c *eventBlock, parts [][]pipeline.Row) error {
	topics, partitions := make([]string, 0, len(parts)), make([]int, 0, len(parts))
	for _, p := range parts {
		for i := range p {
			if i == 0 || p[i].Partition != p[i-1].Partition || p[i].Topic != p[i-1].Topic {
				topics, partitions = append(topics, p[i].Topic), append(partitions, p[i].Partition)
			}
		}
	}
	ctx = withWriteID(ctx, "events", topics, partitions)
	date, at := s.ingestTime()
	var direct []*proto.ColStr
	fill := func(b driver.Batch) error {
		if !viaDriverAppend {
			direct = driverStrings(b)
		}
		if direct != nil {
			for k, p := range direct {
				*p = c.kept[k]
				p.Reset()
			}
		}
		defer c.release()
		for _, rows := range parts {
			for len(rows) > 0 {
				chunk := rows[:min(len(rows), eventChunk)]
				rows = rows[len(chunk):]
				c.fill(chunk, date, at, direct)
				if err := c.append(b, direct == nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var err error
	if s.cluster != nil {
		err = s.clusterInsert(ctx, qInsertEvents, "events", parts[0][0].Partition, fill)
	} else {
		err = s.insert(ctx, qInsertEvents, fill)
	}
	// Keep the buffers the rows went into (the batch is done with them).
	for k, p := range direct {
		c.kept[k] = *p
		c.kept[k].Reset()
	}
	return err
}

// fill sets the block's columns to rows: the String columns straight into
// direct when set, else into c.strs.
func (c *eventBlock) fill(rows []pipeline.Row, date, at time.Time, direct []*proto.ColStr) {
	n := len(rows)
	for i := range rows {
		r := &rows[i]
		if direct != nil {
			for k := range eventStrings {
				direct[k].Append(eventStrings[k].get(r))
			}
		}
	}
	if direct == nil {
		for k := range eventStrings {
			c.strs[k] = resize(c.strs[k], n)
			for i := range rows {
				c.strs[k][i] = eventStrings[k].get(&rows[i])
			}
		}
	}
	c.dates, c.ats, c.stamps = resize(c.dates, n), resize(c.ats, n), resize(c.stamps, n)
	c.parts, c.indexes, c.attempts = resize(c.parts, n), resize(c.indexes, n), resize(c.attempts, n)
	c.offsets = resize(c.offsets, n)
	c.srcParts, c.srcOffsets = resize(c.srcParts, n), resize(c.srcOffsets, n)
	c.valids, c.derivedIDs, c.tlss, c.derivs = resize(c.valids, n), resize(c.derivedIDs, n), resize(c.tlss, n), resize(c.derivs, n)
	c.groups, c.cats = resize(c.groups, n), resize(c.cats, n)
	for i := range rows {
		r := &rows[i]
		c.dates[i], c.ats[i], c.stamps[i] = date, at, time.Unix(r.Timestamp, 0).UTC()
		c.parts[i], c.offsets[i], c.indexes[i] = uint32(r.Partition), uint64(r.Offset), uint32(r.Index)
		c.valids[i], c.derivedIDs[i], c.tlss[i], c.derivs[i] = b2u(r.AddressValid), b2u(r.EventIDDerived), b2u(r.TLS), b2u(r.Derived)
		c.attempts[i], c.groups[i], c.cats[i] = r.Attempt, r.ASMGroupID, r.Categories
		c.srcParts[i], c.srcOffsets[i] = uint32(r.SourcePartition), uint64(r.SourceOffset)
		if c.cats[i] == nil {
			c.cats[i] = noCategories
		}
	}
}

// append hands the chunk's slices to the batch's columns (the String
// columns too when withStrings).
func (c *eventBlock) append(b driver.Batch, withStrings bool) error {
	others := [len(eventOthers)]any{c.dates, c.ats, c.parts, c.offsets, c.indexes, c.stamps,
		c.valids, c.derivedIDs, c.cats, c.attempts, c.tlss, c.groups, c.derivs, c.srcParts, c.srcOffsets}
	for k, name := range eventOthers {
		if err := b.Column(eventColumnIndex[name]).Append(others[k]); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	if withStrings {
		for k, col := range eventStrings {
			if err := b.Column(eventColumnIndex[col.name]).Append(c.strs[k]); err != nil {
				return fmt.Errorf("column %s: %w", col.name, err)
			}
		}
	}
	return nil
}

// release drops the slices' references to the rows' strings, so a batch's
// bytes can be collected once its insert is done.
func (c *eventBlock) release() {
	for k := range c.strs {
		clear(c.strs[k])
	}
	clear(c.cats)
}
