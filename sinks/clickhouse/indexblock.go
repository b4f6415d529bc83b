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

// msgKey is a message's identity in a batch.
type msgKey struct {
	partition   int
	account, id string
}

// msgWin is a message's window and that of its (first) recipient, which is
// almost always its only one.
type msgWin struct {
	key         msgKey
	first, last int64
	to          string
	toFirst     int64
	toLast      int64
}

// toKey is a recipient's message; toWin its window, for the recipients of a
// message after its first.
type toKey struct {
	msg msgKey
	to  string
}

type toWin struct {
	key         toKey
	first, last int64
}

// indexBlock builds message_index inserts; one at a time (its events
// groupCommit sends one insert at a time).
type indexBlock struct {
	byMsg map[msgKey]int // to the message's place in msgs
	msgs  []msgWin
	byTo  map[toKey]int // to the place in others
	other []toWin

	kept                 [len(indexStrings)]proto.ColStr
	strs                 [len(indexStrings)][]string // when the driver's columns cannot be reached
	dates, firsts, lasts []time.Time
	partitions           []uint32
}

// windows gathers the rows' windows: one lookup per row (one map keyed by
// message, the recipient's window beside it), a second map only for a
// message's further recipients.
func (b *indexBlock) windows(parts [][]pipeline.Row) {
	if b.byMsg == nil {
		b.byMsg, b.byTo = map[msgKey]int{}, map[toKey]int{}
	}
	for _, rows := range parts {
		for i := range rows {
			r := &rows[i]
			if r.SGMessageID == "" {
				continue
			}
			k, at := msgKey{r.Partition, r.AccountID, r.SGMessageID}, r.Timestamp
			j, ok := b.byMsg[k]
			if !ok {
				b.byMsg[k] = len(b.msgs)
				b.msgs = append(b.msgs, msgWin{k, at, at, r.EmailNorm, at, at})
				continue
			}
			m := &b.msgs[j]
			m.first, m.last = min(m.first, at), max(m.last, at)
			if m.to == r.EmailNorm {
				m.toFirst, m.toLast = min(m.toFirst, at), max(m.toLast, at)
				continue
			}
			tk := toKey{k, r.EmailNorm}
			if j, ok := b.byTo[tk]; ok {
				w := &b.other[j]
				w.first, w.last = min(w.first, at), max(w.last, at)
				continue
			}
			b.byTo[tk] = len(b.other)
			b.other = append(b.other, toWin{tk, at, at})
		}
	}
}

// rows is the number of message_index rows of the windows.
func (b *indexBlock) rows() int { return 2*len(b.msgs) + len(b.other) }

// row returns the i-th row's partition, kind, key, message and window: a
// "msg" and a "to" row per message, then the further recipients' rows.
func (b *indexBlock) row(i int) (k msgKey, kind, key string, first, last int64) {
	if i < 2*len(b.msgs) {
		m := &b.msgs[i/2]
		if i%2 == 0 {
			return m.key, "msg", m.key.id, m.first, m.last
		}
		return m.key, "to", m.to, m.toFirst, m.toLast
	}
	w := &b.other[i-2*len(b.msgs)]
	return w.key.msg, "to", w.key.to, w.first, w.last
}

// str is the i-th row's value of indexStrings[k].
func (b *indexBlock) str(i, k int) string {
	mk, kind, key, _, _ := b.row(i)
	switch k {
	case 0:
		return mk.account
	case 1:
		return kind
	case 2:
		return key
	}
	return mk.id
}

// release forgets the windows (and so the rows' strings they point into),
// keeping the maps' and slices' room.
func (b *indexBlock) release() {
	clear(b.byMsg)
	clear(b.byTo)
	clear(b.msgs)
	clear(b.other)
	b.msgs, b.other = b.msgs[:0], b.other[:0]
	for k := range b.strs {
		clear(b.strs[k])
	}
}

// writeMessageIndex stores the message_index rows of batches of events, as
// one insert: per message its earliest and latest event time, and per
// recipient its messages (per Kafka partition). It runs before the events
// insert of the same rows.
func (s *Store) writeMessageIndex(ctx context.Context, b *indexBlock, parts ...[]pipeline.Row) error {
	b.windows(parts)
	defer b.release()
	n := b.rows()
	if n == 0 {
		return nil
	}
	date, _ := s.ingestTime()
	b.dates, b.partitions = resize(b.dates, n), resize(b.partitions, n)
	b.firsts, b.lasts = resize(b.firsts, n), resize(b.lasts, n)
	for i := range n {
		k, _, _, first, last := b.row(i)
		b.dates[i], b.partitions[i] = date, uint32(k.partition)
		b.firsts[i], b.lasts[i] = time.Unix(first, 0).UTC(), time.Unix(last, 0).UTC()
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
				for i := range n {
					p.Append(b.str(i, k))
				}
				continue
			}
			b.strs[k] = resize(b.strs[k], n)
			for i := range n {
				b.strs[k][i] = b.str(i, k)
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
		err = s.clusterInsert(ctx, qInsertMessageIndex, "message_index", b.msgs[0].key.partition, fill)
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
