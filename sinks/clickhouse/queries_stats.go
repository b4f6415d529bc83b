package clickhouse

// Statements of the stats API (GET /v3/stats, /v3/categories/stats,
// /v3/mailbox_providers/stats, /bouncer/v1/stats/domains) and bouncer stats.
//
// Every count is exact and read from the events table itself (never from a
// materialized view): uniqExactIf(sg_event_id, ...) counts each event once
// however many rows producer resends left. Periods are UTC: the day, its
// Monday (toMonday) or the first of its month (toStartOfMonth). The SQL
// runs unchanged on ClickHouse 18.16 and current releases, so it avoids
// {param:Type}, positional GROUP BY and toStartOfInterval.

// statsPeriod is the period of an event; its two arguments are the
// aggregation ("day", "week" or "month"), given twice.
const statsPeriod = "toString(multiIf(? = 'month', toStartOfMonth(toDate(timestamp, 'UTC')), " +
	"? = 'week', toMonday(toDate(timestamp, 'UTC')), toDate(timestamp, 'UTC'))) AS period"

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

// statsWhere selects one account's counted events in [from, to) (unix
// seconds); its arguments are account, from, to.
const statsWhere = "account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
	"AND event IN ('processed', 'dropped', 'delivered', 'deferred', 'bounce', 'open', 'click', " +
	"'spamreport', 'unsubscribe', 'group_unsubscribe')"

// statsProvider is the mailbox provider of an event; "other" when unknown.
const statsProvider = "if(provider = '', 'other', provider)"

var (
	// Every stats query ends with LIMIT ?, the most rows to return.
	//
	// Arguments: aggregation (twice), account, from, to.
	qStatsGlobal = register(Query{Name: "stats.global",
		SQL: "SELECT " + statsPeriod + ", " + statsCounts + " FROM events WHERE " + statsWhere +
			" GROUP BY period ORDER BY period LIMIT ?",
		Sample: []any{"day", "day", "acme", uint32(1764201600), uint32(1764288000), uint64(10001)}})

	// Per category (an event with several categories counts for each).
	// Arguments: aggregation (twice), account, from, to, categories.
	qStatsCategories = register(Query{Name: "stats.categories",
		SQL: "SELECT " + statsPeriod + ", category, " + statsCounts +
			" FROM events ARRAY JOIN categories AS category WHERE " + statsWhere + " AND has(?, category)" +
			" GROUP BY period, category ORDER BY period, category LIMIT ?",
		Sample: []any{"week", "week", "acme", uint32(1764201600), uint32(1764288000), []string{"newsletter", "receipts"}, uint64(10001)}})

	// Per mailbox provider. Arguments: aggregation (twice), account, from,
	// to, all (1: every provider, 0: only those listed), providers.
	qStatsProviders = register(Query{Name: "stats.mailbox_providers",
		SQL: "SELECT " + statsPeriod + ", " + statsProvider + " AS mp, " + statsCounts +
			" FROM events WHERE " + statsWhere + " AND (? = 1 OR has(?, " + statsProvider + "))" +
			" GROUP BY period, mp ORDER BY period, mp LIMIT ?",
		Sample: []any{"month", "month", "acme", uint32(1764201600), uint32(1764288000), uint8(1), []string{""}, uint64(10001)}})

	// Per recipient domain. Arguments: aggregation (twice), account, from,
	// to, domains.
	qStatsDomains = register(Query{Name: "stats.domains",
		SQL: "SELECT " + statsPeriod + ", domain AS d, " + statsCounts +
			" FROM events WHERE " + statsWhere + " AND has(?, domain)" +
			" GROUP BY period, d ORDER BY period, d LIMIT ?",
		Sample: []any{"day", "day", "acme", uint32(1764201600), uint32(1764288000), []string{"gmail.com"}, uint64(10001)}})
)
