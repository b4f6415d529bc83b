package clickhouse

// # Activity by time
//
// GET /v3/messages filtered by last_event_time (for example "status =
// not_delivered within a day") asks for messages whose latest event is in
// a range, and a message's status, opens and last event come from all its
// events, whenever they happened. The events table is ordered by account,
// event type and time, so without more knowledge the query groups every
// event of the account (seconds at tens of millions of events).
//
// Each stats build of an (account, day) also stores that day's activity
// window (activity_windows): the earliest and latest event time of every
// message with an event on the day. Before reading them it reads seen: per
// topic and partition the offset of a stored row (the newest it finds), so
// every batch at or below seen was stored, whole, before the window was
// read (a partition's batches are stored one after another, each
// atomically: rollups.go). A range's messages are then read from the
// events table only within
//
//   - the windows of the range's days, when each day's latest window has
//     seen every mark of the day (every event of the day was stored when
//     the window was read, so every message with an event in the range was
//     one of the window's messages, and every event of it stored by then is
//     inside the window), and
//   - the days of the account's marks above seen (the batches stored after
//     the window was read: a message's later events are there),
//
//   - for a day with a mark above its window's seen (events stored since:
//     today, during steady ingest), also the message_index windows of the
//     messages with an event among the day's rows the window did not see
//     (found by their offsets, above seen): such a message may have been
//     sent days before, outside every window read, and message_index holds
//     every stored event of a message inside its window there,
//
// which hold every event of every message that can match, so the answer
// equals the query over all the account's events. A day without a window,
// more than maxUnseenDays days with unseen rows, or more than
// maxWindowMessages messages among them makes the query read the whole
// account as before. Erasures and retention only remove events, so a window stays a
// superset. When the filter also asks for status not_delivered, only
// messages with a bounce or drop within those times are grouped (a
// not_delivered message has one, and all its events are there; over the
// whole range only: a last part's messages are few already). With a
// limit, the range's last hour (a 24th) is tried first, then its last
// quarter, then all of it: the latest last events come first, and enough
// matches in a last part are the answer (activityByTime).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/analytics"
)

var activityWindowColumns = []string{"account_id", "day", "version", "started", "first", "last",
	"seen_topics", "seen_partitions", "seen_offsets"}

var (
	qInsertActivityWindows = register(Query{Name: "activity_windows.insert", SQL: insertSQL("activity_windows", activityWindowColumns), Insert: true})

	// What a window build has seen: per topic and partition the highest
	// offset of some accounts' rows in [from, to) and of the last two days
	// (the newest offsets, cheap to find: the events table is ordered by
	// time within an account and event type). Arguments: accounts
	// (inAccounts), from, to (unix seconds).
	qActivityWindowSeen = register(Query{Name: "activity_windows.seen",
		SQL: "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM events WHERE account_id IN (?) AND " +
			"((timestamp >= toDateTime(?) AND timestamp < toDateTime(?)) OR timestamp >= now() - 172800) " +
			"GROUP BY kafka_topic, kafka_partition",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})

	// The windows of some accounts' days: per account and day, the
	// earliest and latest time of all events of the messages with an event
	// that day. One pass over the accounts' events for all the days (their
	// messages are the IN set). Arguments: the days, accounts (inAccounts),
	// accounts again, from, to (unix seconds, spanning the days), the days
	// again. The second list replaces the subquery's "account_id IN (?)"
	// (see activityWindowSQL).
	qActivityWindowBuild = register(Query{Name: "activity_windows.build",
		SQL: "SELECT account_id, w_day, min(w_first), max(w_last) FROM (" +
			"SELECT account_id, min(timestamp) AS w_first, max(timestamp) AS w_last, " +
			"groupUniqArrayIf(toUInt32(toDate(timestamp, 'UTC')), has(?, toUInt32(toDate(timestamp, 'UTC')))) AS w_days " +
			"FROM events WHERE account_id IN (?) AND sg_message_id != '' " +
			"AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id IN (?) " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND sg_message_id != '' " +
			"AND has(?, toUInt32(toDate(timestamp, 'UTC')))) GROUP BY account_id, sg_message_id" +
			") ARRAY JOIN w_days AS w_day GROUP BY account_id, w_day",
		Sample: []any{[]uint32{20419}, "acme", "acme", uint32(1764201600), uint32(1764288000), []uint32{20419}}})

	// The windows of one account's days in [from, to) (YYYY-MM-DD),
	// newest version first. Arguments: account, from, to.
	qActivityWindowRead = register(Query{Name: "activity_windows.read",
		SQL: "SELECT toUInt32(day), version, toUInt32(started), toUInt32(first), toUInt32(last), seen_topics, seen_partitions, seen_offsets " +
			"FROM activity_windows WHERE account_id = ? AND day >= toDate(?) AND day < toDate(?) ORDER BY version DESC",
		Sample: []any{"acme", "2025-11-27", "2025-11-28"}})

	// The windows of the given days, any account. Argument: days.
	qActivityWindowsOfDays = register(Query{Name: "activity_windows.of_days",
		SQL: "SELECT account_id, toUInt32(day), version, seen_topics, seen_partitions, seen_offsets FROM activity_windows " +
			"WHERE has(?, toUInt32(day))",
		Sample: []any{[]uint32{20419}}})

	// Whether an account has events on some days, in [from, to) (unix
	// seconds). Arguments: account, from, to, the days.
	qActivityDaysEvents = register(Query{Name: "activity_windows.days_events",
		SQL: "SELECT count() FROM events WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
			"AND has(?, toUInt32(toDate(timestamp, 'UTC')))",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000), []uint32{20419}}})

	// The days of one account's marks written on or after an ingest date,
	// any day, with the highest offset per topic and partition. Arguments:
	// account, the ingest date (YYYY-MM-DD).
	qActivityNewMarks = register(Query{Name: "activity_windows.new_marks",
		SQL: "SELECT toUInt32(day), kafka_topic, kafka_partition, max(kafka_offset) FROM stats_marks " +
			"WHERE account_id = ? AND ingest_date >= toDate(?) AND kafka_topic != '' GROUP BY day, kafka_topic, kafka_partition",
		Sample: []any{"acme", "2025-11-27"}})

	// The messages of one account's rows of a day that its window did
	// not see (stored after it was read), at most a limit: a PREWHERE on
	// kafka_offset (above the lowest seen offset among the partitions
	// with unseen rows, 0 when one has none seen) reads only that column
	// of the day's other rows. Arguments: the lowest offset, account,
	// from, to (unix seconds), the seen (topic, partition) ids, their
	// offsets, the ids again, the limit.
	qActivityUnseenMessages = register(Query{Name: "activity_windows.unseen_messages",
		SQL: "SELECT DISTINCT sg_message_id FROM events PREWHERE kafka_offset > ? WHERE account_id = ? " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND sg_message_id != '' AND NOT " + dailyCovered + " LIMIT ?",
		Sample: []any{uint64(40), "acme", uint32(1764201600), uint32(1764288000), []string{"email-events/0"}, []uint64{42}, []string{"email-events/0"}, uint64(10001)}})

	// The messages of a time filter read within windows: those with an
	// event in [start, to] (start is the filter's from or later, see
	// activityByTime), only their events in the windows' time ranges (one
	// per range at run time, see windowed). The message test is a
	// PREWHERE: only sg_message_id is read for all the rows in the ranges,
	// the other columns only where a listed message has events.
	// Arguments: account, start, to (unix seconds), account, each range's
	// from and to, then the filter's and the limit.
	qActivityPrefilterDay = register(Query{Name: "activity.messages.by_time_windows",
		SQL: activityPrewhere("sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? "+
			"AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?))", "AND ("+activityWindowRange+")", activityMatchAll),
		Sample: []any{"acme", uint32(1761955200), uint32(1762041600), "acme", uint32(1761955200), uint32(1762041600), uint64(10)}})

	// The same, grouping only messages with a bounce or a drop within the
	// ranges (for status not_delivered). Arguments: account, start, to,
	// account, each range's from and to (the bounces' subquery), account,
	// each range's from and to again, then the filter's and the limit.
	qActivityPrefilterDayNotDelivered = register(Query{Name: "activity.messages.by_time_windows_not_delivered",
		SQL: activityPrewhere("sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? "+
			"AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?)) "+
			"AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND event IN ('bounce', 'dropped') "+
			"AND ("+activityWindowRange+"))", "AND ("+activityWindowRange+")", activityMatchAll),
		Sample: []any{"acme", uint32(1761955200), uint32(1762041600), "acme", uint32(1761955200), uint32(1762041600),
			"acme", uint32(1761955200), uint32(1762041600), uint64(10)}})
)

// activityWindowSQL expands both account lists of qActivityWindowBuild.
func activityWindowSQL(accounts []string, days []uint32) (string, []any) {
	sql, rest := inAccounts(qActivityWindowBuild.SQL, accounts)
	sql, more := inAccounts(sql, accounts, unixSeconds(dayTime(days[0])), unixSeconds(dayTime(days[len(days)-1]+1)), days)
	return sql, append(append([]any{days}, rest...), more...)
}

// buildActivityWindows stores the activity windows of some accounts' days
// (ascending; see the section comment): seen first, then the windows, in
// one insert.
func (s *Store) buildActivityWindows(ctx context.Context, accounts []string, days []uint32) error {
	if len(accounts) == 0 || len(days) == 0 {
		return nil
	}
	var started uint32
	if err := s.conn.QueryRow(ctx, qRollupNow.SQL).Scan(&started); err != nil {
		return fmt.Errorf("%s: %w", qRollupNow.Name, err)
	}
	version := uint64(time.Now().UnixNano())
	var topics []string
	var parts []uint32
	var offsets []uint64
	sql, args := inAccounts(qActivityWindowSeen.SQL, accounts, unixSeconds(dayTime(days[0])), unixSeconds(dayTime(days[len(days)-1]+1)))
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", qActivityWindowSeen.Name, err)
	}
	for rows.Next() {
		var t string
		var p uint32
		var o uint64
		if err := rows.Scan(&t, &p, &o); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", qActivityWindowSeen.Name, err)
		}
		topics, parts, offsets = append(topics, t), append(parts, p), append(offsets, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	type key struct {
		account string
		day     uint32
	}
	type window struct{ first, last time.Time }
	windows := map[key]window{}
	sql, args = activityWindowSQL(accounts, days)
	rows, err = s.conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", qActivityWindowBuild.Name, err)
	}
	for rows.Next() {
		var k key
		var w window
		if err := rows.Scan(&k.account, &k.day, &w.first, &w.last); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", qActivityWindowBuild.Name, err)
		}
		windows[k] = w
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	at, zero := time.Unix(int64(started), 0).UTC(), time.Unix(0, 0).UTC()
	return s.insert(ctx, qInsertActivityWindows, func(b driver.Batch) error {
		for _, a := range accounts {
			for _, d := range days {
				w, ok := windows[key{a, d}]
				if !ok {
					w = window{zero, zero}
				}
				if err := b.Append(a, dayTime(d), version, at, w.first, w.last, topics, parts, offsets); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// windowEvents bounds the events of the days one window build reads
// (their messages are its IN set); the build reads all the accounts'
// events once.
const windowEvents = 20_000_000

// buildChunkWindows builds the activity windows of built chunks: chunks
// of the same accounts share window builds, each over days with at most
// windowEvents events (chunks of unknown size count as windowEvents / 8).
func (s *Store) buildChunkWindows(ctx context.Context, chunks []RollupChunk, progress func(done, total int, accounts, days int, took time.Duration)) error {
	type batch struct {
		accounts []string
		days     []uint32
		events   uint64
	}
	var batches []*batch
	open := map[string]*batch{}
	for _, c := range chunks {
		k := strings.Join(c.Accounts, "\x00")
		n := c.Events
		if n == 0 {
			n = windowEvents / 8
		}
		b := open[k]
		if b == nil || b.events+n > windowEvents {
			b = &batch{accounts: c.Accounts}
			batches = append(batches, b)
			open[k] = b
		}
		b.days = append(b.days, dayOf(c.Day))
		b.events += n
	}
	for i, b := range batches {
		start := time.Now()
		slices.Sort(b.days)
		b.days = slices.Compact(b.days)
		if err := s.buildActivityWindows(ctx, b.accounts, b.days); err != nil {
			return fmt.Errorf("activity windows of %s..%s (%d accounts): %w", dayString(b.days[0]), dayString(b.days[len(b.days)-1]), len(b.accounts), err)
		}
		if progress != nil {
			progress(i+1, len(batches), len(b.accounts), len(b.days), time.Since(start))
		}
	}
	return nil
}

// activityWindow is the latest window of one day.
type activityWindow struct {
	version     uint64
	started     uint32
	first, last uint32 // both 0: no message had an event on the day
	seen        map[string]uint64
}

// maxWindowDays bounds the days a time filter is read by windows; a longer
// range reads the whole account.
const maxWindowDays = 31

// timePlan is how a time filter's days are read: the time ranges (unix
// seconds, inclusive) that hold every event of every message with an event
// in the filter's range, and the marks that plan relied on (stamp), which
// must still be the same after the query.
type timePlan struct {
	ranges [][2]uint32
	stamp  string
	// what the stamp reads again
	first, last uint32
	since       string
}

// activityTimePlan plans a time filter [from, to] (inclusive) of account
// by the activity windows; ok is false when they cannot tell (see the
// section comment).
func (s *Store) activityTimePlan(ctx context.Context, account string, from, to time.Time) (p timePlan, ok bool, err error) {
	if to.Before(from) {
		return p, false, nil
	}
	p.first, p.last = dayOf(from), dayOf(to)
	if p.last-p.first+1 > maxWindowDays {
		return p, false, nil
	}
	windows := map[uint32]*activityWindow{}
	if err := s.readActivityWindows(ctx, account, p.first, p.last+1, windows); err != nil {
		return p, false, err
	}
	// Batches stored after a window was read have marks written after its
	// start (less a day for the workers' clocks).
	oldest := time.Now().Unix()
	for _, w := range windows {
		oldest = min(oldest, int64(w.started))
	}
	p.since = time.Unix(oldest, 0).UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	marks, recent, stamp, err := s.activityMarks(ctx, account, p.first, p.last, p.since)
	if err != nil {
		return p, false, err
	}
	p.stamp = stamp
	var unbuilt, unseen []uint32
	for d := p.first; d <= p.last; d++ {
		w := windows[d]
		switch {
		case w == nil && len(marks[d]) == 0:
			unbuilt = append(unbuilt, d) // fine if it has no events
			continue
		case w == nil:
			return p, false, nil
		case !w.sees(marks[d]):
			unseen = append(unseen, d)
		}
		if w.first != 0 || w.last != 0 {
			p.ranges = append(p.ranges, [2]uint32{w.first, w.last})
		}
	}
	// A day with rows its window did not see (today, while events
	// arrive): a message with an event among them may have its other
	// events anywhere (a message sent days ago, opened today), so the
	// windows of those messages from message_index too.
	if len(unseen) > maxUnseenDays {
		return p, false, nil
	}
	for _, d := range unseen {
		ranges, ok, err := s.unseenRanges(ctx, account, d, windows[d], marks[d])
		if err != nil || !ok {
			return p, false, err
		}
		p.ranges = append(p.ranges, ranges...)
	}
	if len(unbuilt) > 0 {
		var n uint64
		if err := s.conn.QueryRow(ctx, qActivityDaysEvents.SQL, account, unixSeconds(dayTime(unbuilt[0])),
			unixSeconds(dayTime(unbuilt[len(unbuilt)-1]+1)), unbuilt).Scan(&n); err != nil {
			return p, false, fmt.Errorf("%s: %w", qActivityDaysEvents.Name, err)
		}
		if n > 0 {
			return p, false, nil
		}
	}
	// The days of batches some window did not see.
	for _, m := range recent {
		for _, w := range windows {
			if !w.sees([]coverMark{m.coverMark}) {
				p.ranges = append(p.ranges, [2]uint32{unixSeconds(dayTime(m.day)), unixSeconds(dayTime(m.day+1)) - 1})
				break
			}
		}
	}
	p.ranges = mergeRanges(append(p.ranges, [2]uint32{unixSeconds(from), unixSeconds(to)}), maxWindowRanges)
	return p, true, nil
}

// maxUnseenDays bounds the days of a time filter with rows their window
// did not see; with more the filter reads the whole account.
const maxUnseenDays = 2

// unseenRanges returns the time ranges of the messages with an event
// among the rows of an account's day d that its window w did not see, from
// message_index (each stored event lies inside its message's window
// there); ok is false when the index cannot tell (no index rows for the
// account, more than maxWindowMessages such messages, or one without a
// window).
func (s *Store) unseenRanges(ctx context.Context, account string, d uint32, w *activityWindow, marks []coverMark) ([][2]uint32, bool, error) {
	lowest := lowestUncounted(marks, w.seen)
	ids, offsets := []string{""}, []uint64{0}
	for id, o := range w.seen {
		ids, offsets = append(ids, id), append(offsets, o)
	}
	var msgs []string
	if err := collect(ctx, s.conn, qActivityUnseenMessages, &msgs, lowest, account, unixSeconds(dayTime(d)),
		unixSeconds(dayTime(d+1)), ids, offsets, ids, uint64(maxWindowMessages+1)); err != nil {
		return nil, false, err
	}
	if len(msgs) == 0 {
		return nil, true, nil
	}
	if len(msgs) > maxWindowMessages {
		return nil, false, nil
	}
	args := []any{account}
	for _, m := range msgs {
		args = append(args, m)
	}
	sql := strings.Replace(qRecipientWindows.SQL, "key IN (?)", "key IN (?"+strings.Repeat(", ?", len(msgs)-1)+")", 1)
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", qRecipientWindows.Name, err)
	}
	defer rows.Close()
	var ranges [][2]uint32
	for rows.Next() {
		var id string
		var first, last time.Time
		if err := rows.Scan(&id, &first, &last); err != nil {
			return nil, false, fmt.Errorf("%s: %w", qRecipientWindows.Name, err)
		}
		ranges = append(ranges, [2]uint32{unixSeconds(first), unixSeconds(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(ranges) != len(msgs) {
		return nil, false, nil
	}
	return mergeRanges(ranges, maxWindowRanges), true, nil
}

// dayMark is a mark and its day.
type dayMark struct {
	day uint32
	coverMark
}

// activityMarks reads an account's marks of days [first, last] and those
// written on or after since (any day), and a stamp of both: a batch stored
// since changes the stamp (its marks are written before its events).
func (s *Store) activityMarks(ctx context.Context, account string, first, last uint32, since string) (map[uint32][]coverMark, []dayMark, string, error) {
	marks := map[uint32][]coverMark{}
	var marksErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		marksErr = s.readMarks(ctx, account, first, last+1, marks)
	}()
	var recent []dayMark
	err := func() error {
		rows, err := s.conn.Query(ctx, qActivityNewMarks.SQL, account, since)
		if err != nil {
			return fmt.Errorf("%s: %w", qActivityNewMarks.Name, err)
		}
		defer rows.Close()
		for rows.Next() {
			var m dayMark
			if err := rows.Scan(&m.day, &m.topic, &m.partition, &m.offset); err != nil {
				return fmt.Errorf("%s: %w", qActivityNewMarks.Name, err)
			}
			recent = append(recent, m)
		}
		return rows.Err()
	}()
	<-done
	if err := errors.Join(err, marksErr); err != nil {
		return nil, nil, "", err
	}
	var lines []string
	for d, ms := range marks {
		for _, m := range ms {
			lines = append(lines, fmt.Sprintf("%d %s/%d %d", d, m.topic, m.partition, m.offset))
		}
	}
	for _, m := range recent {
		lines = append(lines, fmt.Sprintf("new %d %s/%d %d", m.day, m.topic, m.partition, m.offset))
	}
	slices.Sort(lines)
	return marks, recent, strings.Join(lines, "\n"), nil
}

// sees reports whether every event the marks stand for was stored when
// the window was read. Erasure marks (topic "") do not matter: an erasure
// only removes events.
func (w *activityWindow) sees(marks []coverMark) bool {
	for _, m := range marks {
		if m.topic == "" {
			continue
		}
		o, ok := w.seen[fmt.Sprintf("%s/%d", m.topic, m.partition)]
		if !ok || m.offset > o {
			return false
		}
	}
	return true
}

// readActivityWindows reads the latest window of each of an account's days
// in [from, to).
func (s *Store) readActivityWindows(ctx context.Context, account string, from, to uint32, out map[uint32]*activityWindow) error {
	rows, err := s.conn.Query(ctx, qActivityWindowRead.SQL, account, dayString(from), dayString(to))
	if err != nil {
		return fmt.Errorf("%s: %w", qActivityWindowRead.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d uint32
		w := &activityWindow{}
		var topics []string
		var parts []uint32
		var offsets []uint64
		if err := rows.Scan(&d, &w.version, &w.started, &w.first, &w.last, &topics, &parts, &offsets); err != nil {
			return fmt.Errorf("%s: %w", qActivityWindowRead.Name, err)
		}
		if _, ok := out[d]; ok { // newest first
			continue
		}
		w.seen = seenOf(topics, parts, offsets)
		out[d] = w
	}
	return rows.Err()
}

// activityByTime answers a filter with a time range at its top (or under
// a top-level AND) from the events within the windows of the range's
// days; ok is false when the windows cannot answer. When a batch was
// stored during the query (the marks changed), it plans and reads again,
// and after activityAttempts tries the query reads the whole account, so
// the answer is always that of one snapshot.
//
// The messages are listed latest last event first, and every one that
// matches has its last event in the range, so it first tries only the
// messages with an event in the range's last part (see sliceStarts): a
// message whose last event is at or after the part's start has an event
// in it, so the matches found are exactly those with their last event in
// the part, and any other match has an earlier last event. When they are
// at least the limit, they begin the answer and the limit ends it; else a
// larger part, up to the whole range.
func (s *Store) activityByTime(ctx context.Context, account string, f *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, bool, error) {
	b := pinnedBetween(f)
	if b == nil {
		return nil, false, nil
	}
	// While events arrive, a batch stored during the query is likely
	// (several a second): plan and read again, a few times, before
	// reading the whole account.
	for range activityAttempts {
		out, ok, again, err := s.activityByTimeOnce(ctx, account, f, b, limit)
		if err != nil || !again {
			return out, ok, err
		}
	}
	return nil, false, nil
}

// activityAttempts is how often activityByTime plans and reads when
// batches are stored during its reads.
const activityAttempts = 3

// activityByTimeOnce is one plan and read of activityByTime; again is true
// when a batch was stored meanwhile (the answer is not used).
func (s *Store) activityByTimeOnce(ctx context.Context, account string, f, b *analytics.ActivityFilter, limit int) (_ []analytics.ActivityMessage, ok, again bool, _ error) {
	p, ok, err := s.activityTimePlan(ctx, account, b.From, b.To)
	if err != nil || !ok {
		return nil, false, false, err
	}
	cond, condArgs, err := compileActivity(f, nil)
	if err != nil {
		return nil, false, false, err
	}
	// Every range fragment (one or two) becomes the ranges, each
	// followed by its bounds.
	parts := make([]string, len(p.ranges))
	var bounds []any
	for i, r := range p.ranges {
		parts[i] = "(" + activityWindowRange + ")"
		bounds = append(bounds, r[0], r[1])
	}
	query := func(q Query) string {
		sql := strings.Replace(q.SQL, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
		return strings.ReplaceAll(sql, "("+activityWindowRange+")", "("+strings.Join(parts, " OR ")+")")
	}
	// The bounces' subquery pays for itself over the whole range, not
	// over a last part (whose messages are few already: at 100 M, 150
	// against 230 ms).
	status, _ := pinned(f, "status")
	var out []analytics.ActivityMessage
	for _, start := range sliceStarts(unixSeconds(b.From), unixSeconds(b.To), limit) {
		q, args := qActivityPrefilterDay, []any{account, start, unixSeconds(b.To)}
		if status == "not_delivered" && start == unixSeconds(b.From) {
			q, args = qActivityPrefilterDayNotDelivered, append(append(args, account), bounds...)
		}
		args = append(append(args, account), bounds...)
		if out, err = s.readActivityMessages(ctx, q.Name, query(q), append(append(args, condArgs...), uint64(max(limit, 0)))); err != nil {
			return nil, false, false, err
		}
		if len(out) >= limit {
			break
		}
	}
	if s.activityRead != nil {
		s.activityRead()
	}
	_, _, stamp, err := s.activityMarks(ctx, account, p.first, p.last, p.since)
	if err != nil || stamp != p.stamp {
		return nil, false, err == nil, err
	}
	return out, true, false, nil
}

// sliceStarts are the starts of the parts of a time range [from, to] that
// activityByTime tries in turn: its last 24th, its last quarter, all of
// it (the last one always from). With no limit only from.
func sliceStarts(from, to uint32, limit int) []uint32 {
	if limit <= 0 || to <= from {
		return []uint32{from}
	}
	var out []uint32
	for _, part := range []uint32{24, 4} {
		if span := (to - from) / part; span > 0 && (len(out) == 0 || to-span < out[len(out)-1]) {
			out = append(out, to-span)
		}
	}
	return append(out, from)
}

// seenOf is a window's seen offsets by "topic/partition".
func seenOf(topics []string, parts []uint32, offsets []uint64) map[string]uint64 {
	seen := make(map[string]uint64, len(topics))
	for i := range topics {
		seen[fmt.Sprintf("%s/%d", topics[i], parts[i])] = offsets[i]
	}
	return seen
}
