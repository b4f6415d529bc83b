package clickhouse

import (
	"context"
	"fmt"
	"strings"

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

// activityMessagesSQL is the list query with f's condition, and its
// arguments: the account, the prefilter's, the filter's, the limit.
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
	sql, args, err := activityMessagesSQL(account, f, limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qActivityMessages.Name, err)
	}
	defer rows.Close()
	var out []analytics.ActivityMessage
	for rows.Next() {
		var m analytics.ActivityMessage
		var norm string
		if err := rows.Scan(&m.MsgID, &m.FromEmail, &m.Subject, &m.ToEmail, &norm, &m.Status, &m.Opens, &m.Clicks, &m.LastEventTime); err != nil {
			return nil, fmt.Errorf("%s: %w", qActivityMessages.Name, err)
		}
		m.LastEventTime = m.LastEventTime.UTC()
		out = append(out, m)
	}
	return out, rows.Err()
}

// ActivityEvents returns one message's events by time, each sg_event_id
// once; none when the account has no such message.
func (s *Store) ActivityEvents(ctx context.Context, account, msgID string) ([]analytics.ActivityEvent, error) {
	rows, err := s.conn.Query(ctx, qActivityEvents.SQL, account, msgID)
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
