package clickhouse

import "strings"

// Fragments of the stats statements (queries_rollups.go), behind GET
// /v3/stats, /v3/categories/stats, /v3/mailbox_providers/stats,
// /bouncer/v1/stats/domains, the dashboard and bouncer stats.
//
// Every count is exact and read from the events table itself or from
// rollups built from it (never from a materialized view):
// uniqExactIf(sg_event_id, ...) counts each event once per day however many
// rows producer resends left. Periods are UTC: the day, its Monday
// (toMonday) or the first of its month (toStartOfMonth). The SQL runs
// unchanged on ClickHouse 18.16 and current releases, so it avoids
// {param:Type}, positional GROUP BY and toStartOfInterval.

// statsMetrics are the base counts, in the order of analytics.StatCounts'
// fields: each the number of distinct values of key among the rows where
// cond holds.
var statsMetrics = []struct{ key, cond string }{
	{"sg_event_id", "event = 'processed'"},
	{"sg_event_id", "event = 'dropped' AND derived = 1"},
	{"sg_event_id", "event = 'dropped'"},
	{"sg_event_id", "event = 'dropped' AND reason = 'Bounced Address'"},
	{"sg_event_id", "event = 'dropped' AND reason = 'Spam Reporting Address'"},
	{"sg_event_id", "event = 'dropped' AND reason = 'Unsubscribed Address'"},
	{"sg_event_id", "event = 'dropped' AND reason = 'Invalid'"},
	{"sg_event_id", "event = 'delivered'"},
	{"sg_event_id", "event = 'deferred'"},
	{"sg_event_id", "event = 'bounce' AND type = 'bounce'"},
	{"sg_event_id", "event = 'bounce' AND type = 'blocked'"},
	{"sg_event_id", "event = 'open'"},
	{"sg_message_id, email_norm", "event = 'open'"},
	{"sg_event_id", "event = 'click'"},
	{"sg_message_id, email_norm", "event = 'click'"},
	{"sg_event_id", "event = 'spamreport'"},
	{"sg_event_id", "event IN ('unsubscribe', 'group_unsubscribe')"},
}

// statsCounts are the base counts as uniqExactIf aggregates.
var statsCounts = func() string {
	parts := make([]string, len(statsMetrics))
	for i, m := range statsMetrics {
		parts[i] = "uniqExactIf(" + m.key + ", " + m.cond + ")"
	}
	return strings.Join(parts, ", ")
}()

// statsTailCounts are the counts a day's rows add to those of a build of
// the day (rollups.go, tail days): over a set of rows S holding every row
// the build did not count and every counted row whose key is the key of an
// uncounted one (t_b = 1: the build counted the row), the keys of S less
// the keys of S's counted rows. Keys outside S's uncounted rows appear on
// both sides or on neither, so that is exactly the keys only uncounted
// rows have: what the build is short of.
var statsTailCounts = func() string {
	parts := make([]string, len(statsMetrics))
	for i, m := range statsMetrics {
		parts[i] = "toUInt64(uniqExactIf(" + m.key + ", " + m.cond + ") - uniqExactIf(" + m.key + ", (" + m.cond + ") AND t_b = 1))"
	}
	return strings.Join(parts, ", ")
}()

// statsProvider is the mailbox provider of an event; "other" when unknown.
const statsProvider = "if(provider = '', 'other', provider)"
