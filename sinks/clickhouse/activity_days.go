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
// which hold every event of every message that can match, so the answer
// equals the query over all the account's events. A day without a window,
// or with a mark above its window's seen (events stored since, today
// during steady ingest), makes the query read the whole account as
// before. Erasures and retention only remove events, so a window stays a
// superset. When the filter also asks for status not_delivered, only
// messages with a bounce or drop within those times are grouped (a
// not_delivered message has one, and all its events are there).

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
	// offset of some accounts' rows of one day [from, to) and of the last
	// two days (the newest offsets, cheap to find: the events table is
	// ordered by time within an account and event type). Arguments:
	// accounts (inAccounts), from, to (unix seconds).
	qActivityWindowSeen = register(Query{Name: "activity_windows.seen",
		SQL: "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM events WHERE account_id IN (?) AND " +
			"((timestamp >= toDateTime(?) AND timestamp < toDateTime(?)) OR timestamp >= now() - 172800) " +
			"GROUP BY kafka_topic, kafka_partition",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})

	// The window of each account's messages with an event in [from, to):
	// the earliest and latest time of all their events. Arguments:
	// accounts (inAccounts), accounts again, from, to (unix seconds). The
	// second list replaces the subquery's "account_id IN (?)" (see
	// activityWindowSQL).
	qActivityWindowBuild = register(Query{Name: "activity_windows.build",
		SQL: "SELECT account_id, min(timestamp), max(timestamp) FROM events WHERE account_id IN (?) AND sg_message_id != '' " +
			"AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id IN (?) " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND sg_message_id != '') GROUP BY account_id",
		Sample: []any{"acme", "acme", uint32(1764201600), uint32(1764288000)}})

	// The windows of one account's days in [from, to) (YYYY-MM-DD),
	// newest version first. Arguments: account, from, to.
	qActivityWindowRead = register(Query{Name: "activity_windows.read",
		SQL: "SELECT toUInt32(day), version, toUInt32(started), toUInt32(first), toUInt32(last), seen_topics, seen_partitions, seen_offsets " +
			"FROM activity_windows WHERE account_id = ? AND day >= toDate(?) AND day < toDate(?) ORDER BY version DESC",
		Sample: []any{"acme", "2025-11-27", "2025-11-28"}})

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

	// The messages of a time filter read within windows: those with an
	// event in the filter's range, only their events in the windows' time
	// ranges (one per range at run time, see windowed). Arguments:
	// account, account, from, to (unix seconds), each range's from and to,
	// then the filter's and the limit.
	qActivityPrefilterDay = register(Query{Name: "activity.messages.by_time_windows",
		SQL: activityWithPrefilter("AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? "+
			"AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?)) AND ("+activityWindowRange+")", activityMatchAll),
		Sample: []any{"acme", "acme", uint32(1761955200), uint32(1762041600), uint32(1761955200), uint32(1762041600), uint64(10)}})

	// The same, grouping only messages with a bounce or a drop within the
	// ranges (for status not_delivered). Arguments: account, account,
	// from, to, each range's from and to, account, each range's from and
	// to again, then the filter's and the limit.
	qActivityPrefilterDayNotDelivered = register(Query{Name: "activity.messages.by_time_windows_not_delivered",
		SQL: activityWithPrefilter("AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? "+
			"AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?)) AND ("+activityWindowRange+") "+
			"AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND event IN ('bounce', 'dropped') "+
			"AND ("+activityWindowRange+"))", activityMatchAll),
		Sample: []any{"acme", "acme", uint32(1761955200), uint32(1762041600), uint32(1761955200), uint32(1762041600),
			"acme", uint32(1761955200), uint32(1762041600), uint64(10)}})
)

// activityWindowSQL expands both account lists of qActivityWindowBuild.
func activityWindowSQL(accounts []string, from, to uint32) (string, []any) {
	sql, args := inAccounts(qActivityWindowBuild.SQL, accounts)
	sql, rest := inAccounts(sql, accounts, from, to)
	return sql, append(args, rest...)
}

// buildActivityWindows stores the activity windows of some accounts' day
// (see the section comment): seen first, then the windows.
func (s *Store) buildActivityWindows(ctx context.Context, accounts []string, day uint32, version uint64) error {
	var started uint32
	if err := s.conn.QueryRow(ctx, qRollupNow.SQL).Scan(&started); err != nil {
		return fmt.Errorf("%s: %w", qRollupNow.Name, err)
	}
	from, to := unixSeconds(dayTime(day)), unixSeconds(dayTime(day+1))
	var topics []string
	var parts []uint32
	var offsets []uint64
	sql, args := inAccounts(qActivityWindowSeen.SQL, accounts, from, to)
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
	type window struct{ first, last time.Time }
	windows := map[string]window{}
	sql, args = activityWindowSQL(accounts, from, to)
	rows, err = s.conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", qActivityWindowBuild.Name, err)
	}
	for rows.Next() {
		var a string
		var w window
		if err := rows.Scan(&a, &w.first, &w.last); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", qActivityWindowBuild.Name, err)
		}
		windows[a] = w
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	at, zero := time.Unix(int64(started), 0).UTC(), time.Unix(0, 0).UTC()
	return s.insert(ctx, qInsertActivityWindows, func(b driver.Batch) error {
		for _, a := range accounts {
			w, ok := windows[a]
			if !ok {
				w = window{zero, zero}
			}
			if err := b.Append(a, dayTime(day), version, at, w.first, w.last, topics, parts, offsets); err != nil {
				return err
			}
		}
		return nil
	})
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
	var unbuilt []uint32
	for d := p.first; d <= p.last; d++ {
		w := windows[d]
		switch {
		case w == nil && len(marks[d]) == 0:
			unbuilt = append(unbuilt, d) // fine if it has no events
		case w == nil || !w.sees(marks[d]):
			return p, false, nil
		case w.first != 0 || w.last != 0:
			p.ranges = append(p.ranges, [2]uint32{w.first, w.last})
		}
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
		w.seen = make(map[string]uint64, len(topics))
		for i := range topics {
			w.seen[fmt.Sprintf("%s/%d", topics[i], parts[i])] = offsets[i]
		}
		out[d] = w
	}
	return rows.Err()
}

// activityByTime answers a filter with a time range at its top (or under
// a top-level AND) from the events within the windows of the range's
// days; ok is false when the windows cannot answer. When a batch was
// stored during the query (the marks changed), the query reads the whole
// account instead, so the answer is always that of one snapshot.
func (s *Store) activityByTime(ctx context.Context, account string, f *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, bool, error) {
	b := pinnedBetween(f)
	if b == nil {
		return nil, false, nil
	}
	p, ok, err := s.activityTimePlan(ctx, account, b.From, b.To)
	if err != nil || !ok {
		return nil, false, err
	}
	cond, condArgs, err := compileActivity(f, nil)
	if err != nil {
		return nil, false, err
	}
	args := []any{account, account, unixSeconds(b.From), unixSeconds(b.To)}
	q := qActivityPrefilterDay
	status, _ := pinned(f, "status")
	if status == "not_delivered" {
		q = qActivityPrefilterDayNotDelivered
	}
	sql := strings.Replace(q.SQL, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
	// Every range fragment (one or two) becomes the ranges, each
	// followed by its bounds.
	parts := make([]string, len(p.ranges))
	var bounds []any
	for i, r := range p.ranges {
		parts[i] = "(" + activityWindowRange + ")"
		bounds = append(bounds, r[0], r[1])
	}
	sql = strings.ReplaceAll(sql, "("+activityWindowRange+")", "("+strings.Join(parts, " OR ")+")")
	args = append(args, bounds...)
	if status == "not_delivered" {
		args = append(append(args, account), bounds...)
	}
	out, err := s.readActivityMessages(ctx, q.Name, sql, append(append(args, condArgs...), uint64(max(limit, 0))))
	if err != nil {
		return nil, false, err
	}
	_, _, stamp, err := s.activityMarks(ctx, account, p.first, p.last, p.since)
	if err != nil || stamp != p.stamp {
		return nil, false, err
	}
	return out, true, nil
}
