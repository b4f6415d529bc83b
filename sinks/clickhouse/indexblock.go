package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/pipeline"
)

// message_index is written beside every events insert, close to two rows
// per event (a message's window and its recipient's), so it is built like
// the events block (eventblock.go): its maps, slices and String columns'
// buffers are kept from one insert to the next instead of being made anew
// for every insert (a fifth of the worker's CPU and most of its garbage
// in make bench before).

// indexStrings are message_index's String columns, in the order of
// indexBlock.kept; the others are ingest_date, kafka_partition, first and
// last.
var indexStrings = [...]string{"account_id", "kind", "key", "sg_message_id"}

// indexColumnIndex maps a message_index column to its place in the INSERT.
var indexColumnIndex = func() map[string]int {
	m := map[string]int{}
	for i, c := range messageIndexColumns {
		m[c] = i
	}
	for _, c := range append(indexStrings[:], "ingest_date", "kafka_partition", "first", "last") {
		if _, ok := m[c]; !ok {
			panic("clickhouse: unknown message_index column " + c)
		}
	}
	return m
}()

// indexKey is a window's identity: for kind "msg" the message (key ""),
// for kind "to" the recipient (key) and the message.
type indexKey struct {
	partition    int
	account, key string
	msg          string
}

type indexWin struct {
	key         indexKey
	to          bool
	first, last int64
}

// indexBlock builds message_index inserts; one at a time (its events
// groupCommit sends one insert at a time).
type indexBlock struct {
	byMsg, byTo map[indexKey]int // to the window's place in order
	order       []indexWin

	kept                 [len(indexStrings)]proto.ColStr
	strs                 [len(indexStrings)][]string // when the driver's columns cannot be reached
	dates, firsts, lasts []time.Time
	partitions           []uint32
}

// windows gathers the rows' windows into b.order, in first-seen order.
func (b *indexBlock) windows(parts [][]pipeline.Row) {
	if b.byMsg == nil {
		b.byMsg, b.byTo = map[indexKey]int{}, map[indexKey]int{}
	}
	add := func(m map[indexKey]int, to bool, k indexKey, at int64) {
		if i, ok := m[k]; ok {
			w := &b.order[i]
			w.first, w.last = min(w.first, at), max(w.last, at)
			return
		}
		m[k] = len(b.order)
		b.order = append(b.order, indexWin{k, to, at, at})
	}
	for _, rows := range parts {
		for i := range rows {
			r := &rows[i]
			if r.SGMessageID == "" {
				continue
			}
			add(b.byMsg, false, indexKey{r.Partition, r.AccountID, "", r.SGMessageID}, r.Timestamp)
			add(b.byTo, true, indexKey{r.Partition, r.AccountID, r.EmailNorm, r.SGMessageID}, r.Timestamp)
		}
	}
}

// release forgets the windows (and so the rows' strings they point into),
// keeping the maps' and slices' room.
func (b *indexBlock) release() {
	clear(b.byMsg)
	clear(b.byTo)
	clear(b.order)
	b.order = b.order[:0]
	for k := range b.strs {
		clear(b.strs[k])
	}
}

func (w *indexWin) str(k int) string {
	switch k {
	case 0:
		return w.key.account
	case 1:
		if w.to {
			return "to"
		}
		return "msg"
	case 2:
		if w.to {
			return w.key.key
		}
		return w.key.msg
	}
	return w.key.msg
}

// writeMessageIndex stores the message_index rows of batches of events, as
// one insert: per message its earliest and latest event time, and per
// recipient its messages (per Kafka partition). It runs before the events
// insert of the same rows.
func (s *Store) writeMessageIndex(ctx context.Context, b *indexBlock, parts ...[]pipeline.Row) error {
	b.windows(parts)
	defer b.release()
	if len(b.order) == 0 {
		return nil
	}
	n := len(b.order)
	date, _ := s.ingestTime()
	b.dates, b.partitions = resize(b.dates, n), resize(b.partitions, n)
	b.firsts, b.lasts = resize(b.firsts, n), resize(b.lasts, n)
	for i := range b.order {
		w := &b.order[i]
		b.dates[i], b.partitions[i] = date, uint32(w.key.partition)
		b.firsts[i], b.lasts[i] = time.Unix(w.first, 0).UTC(), time.Unix(w.last, 0).UTC()
	}
	var direct []*proto.ColStr
	fill := func(batch driver.Batch) error {
		direct = nil
		if !viaDriverAppend {
			direct = driverColStrs(batch, indexStrings[:], indexColumnIndex)
		}
		for k, name := range indexStrings {
			if direct != nil {
				p := direct[k]
				*p = b.kept[k]
				p.Reset()
				for i := range b.order {
					p.Append(b.order[i].str(k))
				}
				continue
			}
			b.strs[k] = resize(b.strs[k], n)
			for i := range b.order {
				b.strs[k][i] = b.order[i].str(k)
			}
			if err := batch.Column(indexColumnIndex[name]).Append(b.strs[k]); err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
		}
		for _, c := range []struct {
			name string
			v    any
		}{{"ingest_date", b.dates}, {"kafka_partition", b.partitions}, {"first", b.firsts}, {"last", b.lasts}} {
			if err := batch.Column(indexColumnIndex[c.name]).Append(c.v); err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
		}
		return nil
	}
	var err error
	if s.cluster != nil {
		// The rows of one call are one shard's (one groupCommit per shard).
		err = s.clusterInsert(ctx, qInsertMessageIndex, "message_index", b.order[0].key.partition, fill)
	} else {
		err = s.insert(ctx, qInsertMessageIndex, fill)
	}
	// Keep the buffers the rows went into (the batch is done with them).
	for k, p := range direct {
		b.kept[k] = *p
		b.kept[k].Reset()
	}
	return err
}

// driverColStrs returns the ch-go columns inside the batch's String
// columns names (placed by index), or nil when the driver's column type is
// not the one this was written for (see colStr).
func driverColStrs(b driver.Batch, names []string, index map[string]int) []*proto.ColStr {
	cols := b.Columns()
	out := make([]*proto.ColStr, len(names))
	for k, name := range names {
		i := index[name]
		if i >= len(cols) {
			return nil
		}
		if out[k] = colStr(cols[i]); out[k] == nil {
			return nil
		}
	}
	return out
}
