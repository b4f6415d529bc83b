package clickhouse

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
