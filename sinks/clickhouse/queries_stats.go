package clickhouse

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

// statsCounts are the base counts, in the order of analytics.StatCounts' fields.
const statsCounts = "uniqExactIf(sg_event_id, event = 'processed'), " +
	"uniqExactIf(sg_event_id, event = 'dropped' AND derived = 1), " +
	"uniqExactIf(sg_event_id, event = 'dropped'), " +
	"uniqExactIf(sg_event_id, event = 'dropped' AND reason = 'Bounced Address'), " +
	"uniqExactIf(sg_event_id, event = 'dropped' AND reason = 'Spam Reporting Address'), " +
	"uniqExactIf(sg_event_id, event = 'dropped' AND reason = 'Unsubscribed Address'), " +
	"uniqExactIf(sg_event_id, event = 'dropped' AND reason = 'Invalid'), " +
	"uniqExactIf(sg_event_id, event = 'delivered'), " +
	"uniqExactIf(sg_event_id, event = 'deferred'), " +
	"uniqExactIf(sg_event_id, event = 'bounce' AND type = 'bounce'), " +
	"uniqExactIf(sg_event_id, event = 'bounce' AND type = 'blocked'), " +
	"uniqExactIf(sg_event_id, event = 'open'), " +
	"uniqExactIf(sg_message_id, email_norm, event = 'open'), " +
	"uniqExactIf(sg_event_id, event = 'click'), " +
	"uniqExactIf(sg_message_id, email_norm, event = 'click'), " +
	"uniqExactIf(sg_event_id, event = 'spamreport'), " +
	"uniqExactIf(sg_event_id, event IN ('unsubscribe', 'group_unsubscribe'))"

// statsProvider is the mailbox provider of an event; "other" when unknown.
const statsProvider = "if(provider = '', 'other', provider)"
