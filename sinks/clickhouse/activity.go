package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Activity filter operators (the same as package api's).
const (
	FilterAnd     = "and"
	FilterOr      = "or"
	FilterEq      = "eq"
	FilterBetween = "between"
)

// ActivityFilter is a parsed activity query: an AND or OR of Args, or one
// condition. Values are only ever bound as arguments.
type ActivityFilter struct {
	Op       string
	Args     []*ActivityFilter
	Field    string // FilterEq: to_email, from_email, msg_id or status
	Value    string
	From, To time.Time // FilterBetween: last_event_time in [From, To]
}

// ActivityMessage is one message of the activity list.
type ActivityMessage struct {
	MsgID, FromEmail, Subject, ToEmail, Status string
	Opens, Clicks                              uint64
	LastEventTime                              time.Time
}

// ActivityEvent is one event of a message.
type ActivityEvent struct {
	Event, Type, Reason, URL, BounceType, UserAgent string
	Email, FromEmail, Subject                       string
	Time                                            time.Time
	Attempt                                         uint32
	AsmGroupID                                      int64
}

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
func compileActivity(f *ActivityFilter, args []any) (string, []any, error) {
	if f == nil {
		return activityMatchAll, args, nil
	}
	switch f.Op {
	case FilterAnd, FilterOr:
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
		return "(" + strings.Join(parts, map[string]string{FilterAnd: " AND ", FilterOr: " OR "}[f.Op]) + ")", args, nil
	case FilterEq:
		col, ok := activityColumns[f.Field]
		if !ok {
			return "", nil, fmt.Errorf("activity: unknown field %q", f.Field)
		}
		return "(" + col + " = ?)", append(args, f.Value), nil
	case FilterBetween:
		return "(a_last >= toDateTime(?) AND a_last <= toDateTime(?))", append(args, unixSeconds(f.From), unixSeconds(f.To)), nil
	}
	return "", nil, fmt.Errorf("activity: unknown operator %q", f.Op)
}

// activityMessagesSQL is the list query with f's condition, and its
// arguments.
func activityMessagesSQL(account string, f *ActivityFilter, limit int) (string, []any, error) {
	cond, args, err := compileActivity(f, []any{account})
	if err != nil {
		return "", nil, err
	}
	sql := strings.Replace(qActivityMessages.SQL, "HAVING "+activityMatchAll, "HAVING "+cond, 1)
	return sql, append(args, uint64(max(limit, 0))), nil
}

// ActivityMessages returns at most limit messages of the account matching
// f (nil: all), the most recent last event first.
func (s *Store) ActivityMessages(ctx context.Context, account string, f *ActivityFilter, limit int) ([]ActivityMessage, error) {
	sql, args, err := activityMessagesSQL(account, f, limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qActivityMessages.Name, err)
	}
	defer rows.Close()
	var out []ActivityMessage
	for rows.Next() {
		var m ActivityMessage
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
func (s *Store) ActivityEvents(ctx context.Context, account, msgID string) ([]ActivityEvent, error) {
	rows, err := s.conn.Query(ctx, qActivityEvents.SQL, account, msgID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qActivityEvents.Name, err)
	}
	defer rows.Close()
	var out []ActivityEvent
	for rows.Next() {
		var e ActivityEvent
		if err := rows.Scan(&e.Event, &e.Type, &e.Time, &e.Reason, &e.URL, &e.BounceType, &e.UserAgent, &e.Attempt,
			&e.Email, &e.FromEmail, &e.Subject, &e.AsmGroupID); err != nil {
			return nil, fmt.Errorf("%s: %w", qActivityEvents.Name, err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
