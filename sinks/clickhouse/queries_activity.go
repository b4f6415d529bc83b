package clickhouse

import "strings"

// Statements of the email activity API (GET /v3/messages and
// /v3/messages/{msg_id}). A message is one sg_message_id of one account;
// each event (sg_event_id) counts once however often it was resent. The
// SQL runs unchanged on ClickHouse 18.16 and current releases: no
// {param:Type}, no positional GROUP BY, no window functions. Aliases differ
// from column names so HAVING and ORDER BY see the aggregates.

// activityMatchAll is the condition of the registered list query; at run
// time it is replaced by the compiled filter, a fragment made only of the
// aliases below, AND, OR, comparison operators, parentheses and ?.
const activityMatchAll = "(1 = 1)"

// activityNoPrefilter is the WHERE prefilter of the registered list query;
// when the filter pins a recipient, a message id or a time range (at its top
// level or in a top-level AND), it is replaced by one of the prefilters
// below, so only that recipient's or message's events are grouped instead
// of every message of the account. A prefilter is implied by the filter,
// so it never changes the result. Its subqueries are GLOBAL IN: on a
// cluster the subquery reads the Distributed table once and every shard
// gets its whole answer (ClickHouse refuses a plain IN over two
// Distributed tables); on one server GLOBAL IN is IN.
const activityNoPrefilter = "AND 1 = 1"

var (
	qActivityPrefilterRecipient = register(Query{Name: "activity.messages.by_recipient",
		SQL: activityWithPrefilter("AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND email_norm = ?)",
			"(a_to_norm = ?)"),
		Sample: []any{"acme", "acme", "ann@gmail.com", "ann@gmail.com", uint64(10)}})
	qActivityPrefilterTime = register(Query{Name: "activity.messages.by_time",
		SQL: activityWithPrefilter("AND sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?))",
			"(a_last >= toDateTime(?) AND a_last <= toDateTime(?))"),
		Sample: []any{"acme", "acme", int64(1761955200), int64(1762041600), int64(1761955200), int64(1762041600), uint64(10)}})
	// The messages with an event in [start, to] (a PREWHERE: of the
	// account's other rows only sg_message_id is read), all their
	// events: a time filter the activity windows cannot answer
	// (activityScanByTime). Arguments: account, start, to (unix
	// seconds), account, then the filter's and the limit.
	qActivityScanByTime = register(Query{Name: "activity.messages.by_time_scan",
		SQL: activityPrewhere("sg_message_id GLOBAL IN (SELECT sg_message_id FROM events WHERE account_id = ? "+
			"AND timestamp >= toDateTime(?) AND timestamp <= toDateTime(?))", "", activityMatchAll),
		Sample: []any{"acme", uint32(1761955200), uint32(1762041600), "acme", uint64(10)}})
	qActivityPrefilterMessage = register(Query{Name: "activity.messages.by_message",
		SQL:    activityWithPrefilter("AND sg_message_id = ?", "(a_msg = ?)"),
		Sample: []any{"acme", "m1", "m1", uint64(10)}})
)

var (
	// Arguments: account, then the filter's, then the limit.
	qActivityMessages = register(Query{Name: "activity.messages",
		SQL: "SELECT sg_message_id AS a_msg, max(from_email) AS a_from, max(subject) AS a_subject, " +
			"max(email) AS a_to, max(email_norm) AS a_to_norm, " +
			"multiIf(countIf(event IN ('bounce', 'dropped')) > 0, 'not_delivered', " +
			"countIf(event IN ('delivered', 'open', 'click')) > 0, 'delivered', 'processed') AS a_status, " +
			"uniqExactIf(sg_event_id, event = 'open') AS a_opens, uniqExactIf(sg_event_id, event = 'click') AS a_clicks, " +
			"max(timestamp) AS a_last " +
			"FROM events WHERE account_id = ? AND sg_message_id != '' " + activityNoPrefilter + " " +
			"GROUP BY sg_message_id HAVING " + activityMatchAll + " ORDER BY a_last DESC, a_msg LIMIT ?",
		Sample: []any{"acme", uint64(10)}})

	// One message's events, each sg_event_id once. Arguments: account,
	// message id.
	qActivityEvents = register(Query{Name: "activity.events",
		SQL: "SELECT any(event) AS e_event, any(type) AS e_type, min(timestamp) AS e_time, any(reason) AS e_reason, " +
			"any(url) AS e_url, any(bounce_type) AS e_bounce_type, any(useragent) AS e_ua, any(attempt) AS e_attempt, " +
			"any(email) AS e_email, any(from_email) AS e_from, any(subject) AS e_subject, any(asm_group_id) AS e_group " +
			"FROM events WHERE account_id = ? AND sg_message_id = ? " +
			"GROUP BY sg_event_id ORDER BY e_time, sg_event_id",
		Sample: []any{"acme", "msg01"}})
)

var messageIndexColumns = []string{"ingest_date", "kafka_partition", "account_id", "kind", "key", "sg_message_id", "first", "last"}

// activityWindowRange is one time range of a windowed prefilter; at run
// time the prefilter holds one per range, joined with OR.
const activityWindowRange = "timestamp >= toDateTime(?) AND timestamp <= toDateTime(?)"

var (
	qInsertMessageIndex = register(Query{Name: "message_index.insert", SQL: insertSQL("message_index", messageIndexColumns), Insert: true})

	// Whether the account has any message_index row (else its events
	// predate the index and are found by scanning). Argument: account.
	qMessageIndexAny = register(Query{Name: "message_index.any",
		SQL: "SELECT count() FROM (SELECT 1 FROM message_index WHERE account_id = ? LIMIT 1)", Sample: []any{"acme"}})

	// The time window of one message. Arguments: account, message id.
	qMessageWindow = register(Query{Name: "message_index.window",
		SQL:    "SELECT key, min(first), max(last) FROM message_index WHERE account_id = ? AND kind = 'msg' AND key = ? GROUP BY key",
		Sample: []any{"acme", "m1"}})

	// One recipient's messages, at most a limit. Arguments: account,
	// email_norm, limit.
	qRecipientMessages = register(Query{Name: "message_index.recipient_messages",
		SQL:    "SELECT DISTINCT sg_message_id FROM message_index WHERE account_id = ? AND kind = 'to' AND key = ? LIMIT ?",
		Sample: []any{"acme", "ann@gmail.com", uint64(10001)}})

	// The time windows of some messages: the list is literal (one ? per
	// message at run time, see messageWindows), as the primary key
	// narrows an IN only with a literal list (ClickHouse 18.16 reads every
	// row of the account for an IN subquery, GLOBAL or not). Arguments:
	// account, the message ids.
	qRecipientWindows = register(Query{Name: "message_index.recipient_windows",
		SQL:    "SELECT key, min(first), max(last) FROM message_index WHERE account_id = ? AND kind = 'msg' AND key IN (?) GROUP BY key",
		Sample: []any{"acme", "m1"}})

	// The messages of the windowed prefilter: those listed (a PREWHERE:
	// the other columns are read only where they have events; a literal
	// list, one ? per message at run time: a set, where has() compares
	// each row with every message, 3 times slower for 34), only events
	// in the ranges (one per range at run time). Arguments: the message
	// ids, account, each range's from and to, then the filter's and the
	// limit.
	qActivityPrefilterWindows = register(Query{Name: "activity.messages.by_windows",
		SQL:    activityPrewhere("sg_message_id IN (?)", "AND ("+activityWindowRange+")", activityMatchAll),
		Sample: []any{"m1", "acme", uint32(1761955200), uint32(1762041600), uint64(10)}})

	// qActivityEvents within time ranges (one per range at run time).
	// Arguments: account, message id, each range's from and to.
	qActivityEventsWindowed = register(Query{Name: "activity.events.windowed",
		SQL:    strings.Replace(qActivityEvents.SQL, "AND sg_message_id = ? ", "AND sg_message_id = ? AND ("+activityWindowRange+") ", 1),
		Sample: []any{"acme", "msg01", uint32(1761955200), uint32(1762041600)}})

	// Fill message_index from the events of some accounts' day (bouncer
	// rollups rebuild). Arguments: accounts (inAccounts), from, to (unix
	// seconds), for each of the two statements.
	qMessageIndexRebuildMsg = register(Query{Name: "message_index.rebuild_msg",
		SQL: insertSQL("message_index", messageIndexColumns) + " SELECT today(), any(kafka_partition), account_id, 'msg', sg_message_id, " +
			"sg_message_id, min(timestamp), max(timestamp) FROM events WHERE account_id IN (?) AND timestamp >= toDateTime(?) " +
			"AND timestamp < toDateTime(?) AND sg_message_id != '' GROUP BY account_id, sg_message_id",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})
	qMessageIndexRebuildTo = register(Query{Name: "message_index.rebuild_to",
		SQL: insertSQL("message_index", messageIndexColumns) + " SELECT today(), any(kafka_partition), account_id, 'to', email_norm, " +
			"sg_message_id, min(timestamp), max(timestamp) FROM events WHERE account_id IN (?) AND timestamp >= toDateTime(?) " +
			"AND timestamp < toDateTime(?) AND sg_message_id != '' GROUP BY account_id, email_norm, sg_message_id",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})
)
