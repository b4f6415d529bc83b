package clickhouse

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// activityColumns are the only expressions a filter compiles to, by field;
// to_email and from_email compare lower-cased (the parser lower-cases
// their values).
var activityColumns = map[string]string{
	"to_email":   "a_to_norm",
	"from_email": "lower(a_from)",
	"msg_id":     "a_msg",
	"status":     "a_status",
}

// compileActivity turns f into a condition fragment of fixed column
// expressions, operators and ? placeholders, and its arguments.
func compileActivity(f *analytics.ActivityFilter, args []any) (string, []any, error) {
	if f == nil {
		return activityMatchAll, args, nil
	}
	switch f.Op {
	case analytics.FilterAnd, analytics.FilterOr:
		if len(f.Args) == 0 {
			return "", nil, fmt.Errorf("activity: empty %s", f.Op)
		}
		parts := make([]string, 0, len(f.Args))
		for _, a := range f.Args {
			var p string
			var err error
			if p, args, err = compileActivity(a, args); err != nil {
				return "", nil, err
			}
			parts = append(parts, p)
		}
		return "(" + strings.Join(parts, map[string]string{analytics.FilterAnd: " AND ", analytics.FilterOr: " OR "}[f.Op]) + ")", args, nil
	case analytics.FilterEq:
		col, ok := activityColumns[f.Field]
		if !ok {
			return "", nil, fmt.Errorf("activity: unknown field %q", f.Field)
		}
		return "(" + col + " = ?)", append(args, f.Value), nil
	case analytics.FilterBetween:
		return "(a_last >= toDateTime(?) AND a_last <= toDateTime(?))", append(args, unixSeconds(f.From), unixSeconds(f.To)), nil
	}
	return "", nil, fmt.Errorf("activity: unknown operator %q", f.Op)
}

// activityQuery is the list query with f's condition, and its arguments:
// the account, the prefilter's, the filter's, the limit. When
// the filter pins a recipient or a message id and message_index knows its
// messages, the prefilter lists them and the time ranges of their events
// (the events table is ordered by time within an event type, so only
// those ranges are read).
func (s *Store) activityQuery(ctx context.Context, account string, f *analytics.ActivityFilter, limit int) (string, []any, error) {
	cond, condArgs, err := compileActivity(f, nil)
	if err != nil {
		return "", nil, err
	}
	key, byRecipient := pinned(f, "to_email")
	if !byRecipient {
		key, _ = pinned(f, "msg_id")
	}
	if key != "" {
		ids, ranges, ok, err := s.messageWindows(ctx, account, key, byRecipient)
		if err != nil {
			return "", nil, err
		}
		if ok {
			if len(ids) == 0 { // no such message: nothing matches
				ids, ranges = []string{""}, [][2]uint32{{1, 0}}
			}
			sql := strings.Replace(qActivityPrefilterWindows.SQL, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
			sql = strings.Replace(sql, "sg_message_id IN (?)", "sg_message_id IN (?"+strings.Repeat(", ?", len(ids)-1)+")", 1)
			args := make([]any, 0, len(ids)+1+2*len(ranges))
			for _, id := range ids {
				args = append(args, id)
			}
			sql, args = windowed(sql, ranges, append(args, account))
			return sql, append(append(args, condArgs...), uint64(max(limit, 0))), nil
		}
	}
	return activityMessagesSQL(account, f, limit)
}

// activityMessagesSQL is the list query with f's condition and a
// prefilter that reads the account's events (no message_index answer),
// and its arguments: the account, the prefilter's, the filter's, the
// limit.
func activityMessagesSQL(account string, f *analytics.ActivityFilter, limit int) (string, []any, error) {
	cond, condArgs, err := compileActivity(f, nil)
	if err != nil {
		return "", nil, err
	}
	args := []any{account}
	prefilter := activityNoPrefilter
	if p, ok := pinned(f, "to_email"); ok {
		prefilter = "AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND email_norm = ?)"
		args = append(args, account, p)
	} else if p, ok := pinned(f, "msg_id"); ok {
		prefilter = "AND sg_message_id = ?"
		args = append(args, p)
	} else if b := pinnedBetween(f); b != nil {
		// A message whose last event is in the range has an event in it.
		prefilter = "AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?))"
		args = append(args, account, unixSeconds(b.From), unixSeconds(b.To))
	}
	return activityWithPrefilter(prefilter, cond), append(append(args, condArgs...), uint64(max(limit, 0))), nil
}

// activityWithPrefilter is the registered list query with a prefilter and
// a condition in place of the defaults.
func activityWithPrefilter(prefilter, cond string) string {
	sql := strings.Replace(qActivityMessages.SQL, activityNoPrefilter, prefilter, 1)
	return strings.Replace(sql, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
}

// activityPrewhere is activityWithPrefilter with a PREWHERE: ClickHouse
// reads the PREWHERE's columns first and the others only for the granules
// where it holds (it does not move an IN subquery there itself).
func activityPrewhere(prewhere, prefilter, cond string) string {
	return strings.Replace(activityWithPrefilter(prefilter, cond), " FROM events WHERE ", " FROM events PREWHERE "+prewhere+" WHERE ", 1)
}

// pinnedBetween returns the time range at the top of f or directly under
// a top-level AND, or nil.
func pinnedBetween(f *analytics.ActivityFilter) *analytics.ActivityFilter {
	switch {
	case f == nil:
		return nil
	case f.Op == analytics.FilterBetween:
		return f
	case f.Op == analytics.FilterAnd:
		for _, a := range f.Args {
			if a.Op == analytics.FilterBetween {
				return a
			}
		}
	}
	return nil
}

// pinned returns the value f requires field to equal: an equality at the
// top of f or directly under a top-level AND.
func pinned(f *analytics.ActivityFilter, field string) (string, bool) {
	switch {
	case f == nil:
		return "", false
	case f.Op == analytics.FilterEq && f.Field == field:
		return f.Value, true
	case f.Op == analytics.FilterAnd:
		for _, a := range f.Args {
			if a.Op == analytics.FilterEq && a.Field == field {
				return a.Value, true
			}
		}
	}
	return "", false
}

// ActivityMessages returns at most limit messages of the account matching
// f (nil: all), the most recent last event first.
func (s *Store) ActivityMessages(ctx context.Context, account string, f *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, error) {
	_, byRecipient := pinned(f, "to_email")
	_, byMessage := pinned(f, "msg_id")
	if !byRecipient && !byMessage { // those read message_index's windows
		out, ok, err := s.activityByTime(ctx, account, f, limit)
		if err != nil || ok {
			return out, err
		}
		if b := pinnedBetween(f); b != nil {
			return s.activityScanByTime(ctx, account, f, b, limit)
		}
	}
	sql, args, err := s.activityQuery(ctx, account, f, limit)
	if err != nil {
		return nil, err
	}
	return s.readActivityMessages(ctx, qActivityMessages.Name, sql, args)
}

// activityScanByTime answers a filter with the time range b at its top
// (or under a top-level AND) from all the account's events, when the
// activity windows cannot (a day being ingested): the messages with an
// event in the range's last parts first, as activityByTime does, each
// part one query.
func (s *Store) activityScanByTime(ctx context.Context, account string, f, b *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, error) {
	cond, condArgs, err := compileActivity(f, nil)
	if err != nil {
		return nil, err
	}
	sql := strings.Replace(qActivityScanByTime.SQL, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
	var out []analytics.ActivityMessage
	for _, start := range sliceStarts(unixSeconds(b.From), unixSeconds(b.To), limit) {
		args := append([]any{account, start, unixSeconds(b.To), account}, condArgs...)
		if out, err = s.readActivityMessages(ctx, qActivityScanByTime.Name, sql, append(args, uint64(max(limit, 0)))); err != nil {
			return nil, err
		}
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// readActivityMessages runs a list query (named name in errors).
func (s *Store) readActivityMessages(ctx context.Context, name, sql string, args []any) ([]analytics.ActivityMessage, error) {
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer rows.Close()
	var out []analytics.ActivityMessage
	for rows.Next() {
		var m analytics.ActivityMessage
		var norm string
		if err := rows.Scan(&m.MsgID, &m.FromEmail, &m.Subject, &m.ToEmail, &norm, &m.Status, &m.Opens, &m.Clicks, &m.LastEventTime); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		m.LastEventTime = m.LastEventTime.UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// ActivityEvents returns one message's events by time, each sg_event_id
// once; none when the account has no such message.
func (s *Store) ActivityEvents(ctx context.Context, account, msgID string) ([]analytics.ActivityEvent, error) {
	sql, args := qActivityEvents.SQL, []any{account, msgID}
	_, ranges, ok, err := s.messageWindows(ctx, account, msgID, false)
	if err != nil {
		return nil, err
	}
	if ok {
		if len(ranges) == 0 {
			return nil, nil
		}
		sql, args = windowed(qActivityEventsWindowed.SQL, ranges, args)
	}
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qActivityEvents.Name, err)
	}
	defer rows.Close()
	var out []analytics.ActivityEvent
	for rows.Next() {
		var e analytics.ActivityEvent
		if err := rows.Scan(&e.Event, &e.Type, &e.Time, &e.Reason, &e.URL, &e.BounceType, &e.UserAgent, &e.Attempt,
			&e.Email, &e.FromEmail, &e.Subject, &e.AsmGroupID); err != nil {
			return nil, fmt.Errorf("%s: %w", qActivityEvents.Name, err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// maxWindowMessages bounds the messages a windowed prefilter lists; a
// recipient with more is found by the scanning prefilter.
const maxWindowMessages = 10000

// maxWindowRanges bounds the time ranges of a windowed prefilter: windows
// are merged (closest first) until there are no more.
const maxWindowRanges = 32

// messageWindows reads the windows of one message (byRecipient false) or
// of a recipient's messages from message_index: the message ids and the
// merged time ranges that hold all their events. ok is false when the
// index cannot answer (the account has no index rows, as for events
// stored before it existed, or the recipient has too many messages).
func (s *Store) messageWindows(ctx context.Context, account, key string, byRecipient bool) (ids []string, ranges [][2]uint32, ok bool, err error) {
	var indexed uint64
	if err := s.conn.QueryRow(ctx, qMessageIndexAny.SQL, account).Scan(&indexed); err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", qMessageIndexAny.Name, err)
	}
	if indexed == 0 {
		return nil, nil, false, nil
	}
	q, args := qMessageWindow, []any{account, key}
	if byRecipient {
		msgs, err := s.recipientMessages(ctx, account, key)
		if err != nil || len(msgs) > maxWindowMessages {
			return nil, nil, false, err
		}
		if len(msgs) == 0 {
			return nil, nil, true, nil
		}
		q = qRecipientWindows
		args = []any{account}
		for _, m := range msgs {
			args = append(args, m)
		}
	}
	sql := strings.Replace(q.SQL, "key IN (?)", "key IN (?"+strings.Repeat(", ?", len(args)-2)+")", 1)
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var first, last time.Time
		if err := rows.Scan(&id, &first, &last); err != nil {
			return nil, nil, false, fmt.Errorf("%s: %w", q.Name, err)
		}
		ids = append(ids, id)
		ranges = append(ranges, [2]uint32{unixSeconds(first), unixSeconds(last)})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	if len(ids) > maxWindowMessages {
		return nil, nil, false, nil
	}
	return ids, mergeRanges(ranges, maxWindowRanges), true, nil
}

// recipientMessages lists a recipient's messages from message_index, at
// most maxWindowMessages + 1.
func (s *Store) recipientMessages(ctx context.Context, account, email string) ([]string, error) {
	rows, err := s.conn.Query(ctx, qRecipientMessages.SQL, account, email, uint64(maxWindowMessages+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qRecipientMessages.Name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, fmt.Errorf("%s: %w", qRecipientMessages.Name, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// mergeRanges merges overlapping ranges, then the closest neighbours until
// at most max remain; the result covers every input range.
func mergeRanges(rs [][2]uint32, max int) [][2]uint32 {
	slices.SortFunc(rs, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	var out [][2]uint32
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = maxU32(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	for len(out) > max {
		best := 1
		for i := 2; i < len(out); i++ {
			if out[i][0]-out[i-1][1] < out[best][0]-out[best-1][1] {
				best = i
			}
		}
		out[best-1][1] = maxU32(out[best-1][1], out[best][1])
		out = slices.Delete(out, best, best+1)
	}
	return out
}

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// windowed repeats the range fragment of a windowed statement once per
// range (joined with OR) and appends the ranges' bounds to args.
func windowed(sql string, ranges [][2]uint32, args []any) (string, []any) {
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = "(" + activityWindowRange + ")"
		args = append(args, r[0], r[1])
	}
	return strings.Replace(sql, "("+activityWindowRange+")", "("+strings.Join(parts, " OR ")+")", 1), args
}
