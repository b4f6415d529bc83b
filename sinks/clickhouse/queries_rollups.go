package clickhouse

import "strings"

// Statements of the stats rollups (rollups.go): the per-day counts of each
// stats dimension, read from the events table (the exact query, also what a
// build stores) or from stats_daily, and the marks that say which days a
// build covers. Days are numbered as ClickHouse numbers Dates (days since
// 1970-01-01, UTC).

// rollupDims are the dimensions a build stores, in build order.
var rollupDims = []string{dimGlobal, dimCategory, dimProvider, dimDomain, dimReason, dimBrowser, dimClient, dimDevice, dimGeo}

const (
	dimGlobal   = ""
	dimCategory = "category"
	dimProvider = "provider"
	dimDomain   = "domain"
	dimReason   = "reason"
	// The opens' and clicks' user agent and place (events columns of
	// migration 0018): key = ua_browser; ua_client with classification =
	// ua_device; ua_device; geo_country with classification = geo_region.
	// Only builds whose build row has key buildAgents hold them.
	dimBrowser = "browser"
	dimClient  = "client"
	dimDevice  = "device"
	dimGeo     = "geo"
	// dimBuild rows record a build (stats_daily's comment); their key is
	// buildAgents when the build holds the user agent and place dimensions.
	dimBuild    = "build"
	buildAgents = "agents"
)

// dailyCoverID names a (topic, partition) in a coverage list.
const dailyCoverID = "concat(kafka_topic, '/', toString(kafka_partition))"

// dailySQL is the exact per-day query of one dimension: per account, day
// (toUInt32 of the UTC date), key, classification and bounce type, the
// counts of analytics.StatCounts (each sg_event_id once per day), then the
// newest diagnostic text and its time (reason rows only). Arguments:
// accounts (one ? per account: inAccounts), from, to (unix seconds), the days to count, all keys (1) or
// only those listed (0), the keys, whether to count only rows a coverage
// list holds (1) or every row (0), the coverage's (topic, partition) ids,
// their highest offsets, and the ids again.
func dailySQL(dim string) string {
	d := dailyParts(dim)
	return "SELECT account_id AS r_account, toUInt32(toDate(timestamp, 'UTC')) AS r_day, " + d.key + " AS r_key, " +
		d.class + " AS r_class, " + d.btype + " AS r_btype, " + statsCounts + ", " + d.example +
		" FROM " + d.from + " WHERE account_id IN (?) AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
		"AND event IN " + statsEvents + d.where +
		" AND has(?, toUInt32(toDate(timestamp, 'UTC'))) AND (? = 1 OR has(?, " + d.key + "))" +
		" AND (? = 0 OR " + dailyCovered + ")" +
		" GROUP BY r_account, r_day, r_key, r_class, r_btype"
}

// statsEvents are the event types the stats count.
const statsEvents = "('processed', 'dropped', 'delivered', 'deferred', 'bounce', 'open', 'click', " +
	"'spamreport', 'unsubscribe', 'group_unsubscribe')"

// dailyCovered holds for a row a coverage list holds (its arguments: the
// list's (topic, partition) ids, their highest offsets, the ids again).
const dailyCovered = "(indexOf(?, " + dailyCoverID + ") > 0 AND kafka_offset <= arrayElement(?, indexOf(?, " + dailyCoverID + ")))"

// dailyDim is what the per-day query of one dimension groups by and reads:
// the key, classification and bounce type expressions, the table (with an
// ARRAY JOIN for categories), a condition that starts with AND (or
// nothing), and the example text and time of reason rows.
type dailyDim struct{ key, class, btype, from, where, example string }

func dailyParts(dim string) dailyDim {
	d := dailyDim{key: "''", class: "''", btype: "''", from: "events", example: "'', toDateTime(0)"}
	switch dim {
	case dimCategory:
		d.key, d.from = "category", "events ARRAY JOIN categories AS category"
	case dimProvider:
		d.key = statsProvider
	case dimDomain:
		d.key = "domain"
	case dimReason:
		d.key, d.class, d.btype, d.where = "reason_code", "bounce_classification", "bounce_type", " AND event = 'bounce'"
		d.example = "argMax(reason, timestamp), max(timestamp)"
	case dimBrowser: // SendGrid's browser stats count clicks, client and device stats opens
		d.key, d.where = "ua_browser", " AND event = 'click' AND ua_browser != ''"
	case dimClient:
		d.key, d.class, d.where = "ua_client", "ua_device", " AND event = 'open' AND ua_client != ''"
	case dimDevice:
		d.key, d.where = "ua_device", " AND event = 'open' AND ua_device != ''"
	case dimGeo:
		d.key, d.class, d.where = "geo_country", "geo_region", " AND event IN ('open', 'click') AND geo_country != ''"
	}
	return d
}

// dailyTailColumns are the columns of the events the per-day queries read.
const dailyTailColumns = "account_id, timestamp, event, type, derived, reason, sg_event_id, sg_message_id, email_norm, categories, " +
	"provider, domain, reason_code, bounce_classification, bounce_type, ua_browser, ua_client, ua_device, geo_country, geo_region"

// dailyTailSQL is what one account's day adds to a build of the day that
// did not count all of it (rollups.go, tail days), per key, classification
// and bounce type: statsTailCounts over the rows S of the day whose
// sg_event_id is that of a row the build did not count, or (opens and
// clicks) whose message and recipient are those of an open or click it
// did not count, and the newest diagnostic text of S (reason rows). The
// build's uncounted rows are found by their offsets: a PREWHERE on
// kafka_offset (above the lowest offset the build counted up to among the
// partitions with uncounted rows, 0 when one has none counted) reads
// only that column of the day's other rows. The subqueries are GLOBAL IN,
// as in the activity queries: on a cluster ClickHouse refuses a plain IN
// over two Distributed tables; on one server GLOBAL IN is IN. Arguments: for each of the
// two halves of S the coverage (ids, offsets, ids), the lowest offset,
// account, from, to (unix seconds), the coverage again, account, from,
// to; then all keys (1) or only those listed (0), the keys.
func dailyTailSQL(dim string) string {
	d := dailyParts(dim)
	uncounted := func(also string) string {
		return "FROM events PREWHERE kafka_offset > ? WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)" +
			also + " AND NOT " + dailyCovered
	}
	half := func(in, also string) string {
		return "SELECT " + dailyTailColumns + ", " + dailyCovered + " AS t_b FROM events PREWHERE " + in +
			" WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)" + also
	}
	opens := " AND event IN ('open', 'click')"
	rows := "(" + half("sg_event_id GLOBAL IN (SELECT sg_event_id "+uncounted("")+")", "") + " UNION ALL " +
		half("(sg_message_id, email_norm) GLOBAL IN (SELECT sg_message_id, email_norm "+uncounted(opens)+")", opens) + ")"
	return "SELECT account_id AS r_account, toUInt32(toDate(timestamp, 'UTC')) AS r_day, " + d.key + " AS r_key, " +
		d.class + " AS r_class, " + d.btype + " AS r_btype, " + statsTailCounts + ", " + d.example +
		" FROM " + strings.Replace(d.from, "events", rows, 1) + " WHERE event IN " + statsEvents + d.where +
		" AND (? = 1 OR has(?, " + d.key + "))" +
		" GROUP BY r_account, r_day, r_key, r_class, r_btype"
}

func dailySample(dim string) []any {
	return []any{"acme", uint32(1764201600), uint32(1764288000), []uint32{20419}, uint8(1), []string{""},
		uint8(1), []string{"email-events/0"}, []uint64{42}, []string{"email-events/0"}}
}

// qStatsDaily holds the per-day query of each dimension.
var qStatsDaily = func() map[string]Query {
	m := map[string]Query{}
	for _, dim := range rollupDims {
		name := dim
		if name == "" {
			name = "global"
		}
		m[dim] = register(Query{Name: "stats.daily." + name, SQL: dailySQL(dim), Sample: dailySample(dim)})
	}
	return m
}()

// qStatsTail holds the tail query of each dimension (dailyTailSQL).
var qStatsTail = func() map[string]Query {
	m := map[string]Query{}
	for _, dim := range rollupDims {
		name := dim
		if name == "" {
			name = "global"
		}
		cv := []any{[]string{"email-events/0"}, []uint64{42}, []string{"email-events/0"}}
		var args []any
		for range 2 {
			args = append(append(args, cv...), uint64(40), "acme", uint32(1764201600), uint32(1764288000))
			args = append(append(args, cv...), "acme", uint32(1764201600), uint32(1764288000))
		}
		m[dim] = register(Query{Name: "stats.tail." + name, SQL: dailyTailSQL(dim), Sample: append(args, uint8(0), []string{""})})
	}
	return m
}()

var statsMarkColumns = []string{"ingest_date", "account_id", "day", "kafka_topic", "kafka_partition", "kafka_offset"}

var statsDailyColumns = []string{"account_id", "day", "dim", "key", "classification", "bounce_type", "version",
	"processed", "derived_drops", "drops", "bounce_drops", "spam_report_drops", "unsubscribe_drops", "invalid_drops",
	"delivered", "deferred", "bounces", "blocks", "opens", "unique_opens", "clicks", "unique_clicks", "spam_reports",
	"unsubscribes", "example", "example_at", "started", "cover_topics", "cover_partitions", "cover_offsets"}

var (
	qInsertStatsMarks = register(Query{Name: "stats_marks.insert", SQL: insertSQL("stats_marks", statsMarkColumns), Insert: true})
	qInsertStatsDaily = register(Query{Name: "stats_daily.insert", SQL: insertSQL("stats_daily", statsDailyColumns), Insert: true})

	// The builds of one account's days in [from, to) (YYYY-MM-DD), newest
	// first. Arguments: account, from, to.
	qRollupBuilds = register(Query{Name: "stats_daily.builds",
		SQL: "SELECT toUInt32(day), version, toUInt32(started), cover_topics, cover_partitions, cover_offsets, key FROM stats_daily " +
			"WHERE account_id = ? AND dim = 'build' AND day >= toDate(?) AND day < toDate(?) ORDER BY version DESC",
		Sample: []any{"acme", "2025-11-27", "2025-12-27"}})

	// The marks of one account's days in [from, to): per day, topic and
	// partition the highest offset. Arguments: account, from, to
	// (YYYY-MM-DD).
	qRollupMarks = register(Query{Name: "stats_marks.read",
		SQL: "SELECT toUInt32(day), kafka_topic, kafka_partition, max(kafka_offset) FROM stats_marks " +
			"WHERE account_id = ? AND day >= toDate(?) AND day < toDate(?) GROUP BY day, kafka_topic, kafka_partition",
		Sample: []any{"acme", "2025-11-27", "2025-12-27"}})

	// The rollups of one account's days in [from, to) (YYYY-MM-DD), each
	// day at the build version asked for ("day@version", day as toUInt32),
	// summed per period (day, week: its Monday, month: its first day, all:
	// 1970-01-01) and key, with each build's own row (dim 'build', r_day
	// its day; 0 on count rows): a reader uses the answer only if every
	// build row came back, since a build's rows are one part (one replica
	// answers for the shard) and a newer build can replace them
	// (ReplacingMergeTree) between choosing the version and reading it.
	// Arguments: the period (day, week, month or all) three times,
	// account, dim, from, to, the builds, all keys (1) or only those listed
	// (0), the keys.
	qRollupRead = register(Query{Name: "stats_daily.read",
		SQL: "SELECT if(dim = 'build', toUInt32(day), 0) AS r_day, dim = 'build' AS r_build, " +
			"if(? = 'all', '1970-01-01', toString(multiIf(? = 'week', toMonday(day), ? = 'month', toStartOfMonth(day), day))) AS r_period, " +
			"key AS r_key, classification AS r_class, bounce_type AS r_btype, " +
			"sum(processed), sum(derived_drops), sum(drops), sum(bounce_drops), sum(spam_report_drops), sum(unsubscribe_drops), " +
			"sum(invalid_drops), sum(delivered), sum(deferred), sum(bounces), sum(blocks), sum(opens), sum(unique_opens), " +
			"sum(clicks), sum(unique_clicks), sum(spam_reports), sum(unsubscribes), argMax(example, example_at), max(example_at) " +
			"FROM stats_daily WHERE account_id = ? AND (dim = ? OR dim = 'build') AND day >= toDate(?) AND day < toDate(?) " +
			"AND has(?, concat(toString(toUInt32(day)), '@', toString(version))) AND (? = 1 OR dim = 'build' OR has(?, key)) " +
			"GROUP BY r_day, r_build, r_period, r_key, r_class, r_btype",
		Sample: []any{"week", "week", "week", "acme", "domain", "2025-11-27", "2025-12-27", []string{"20419@1"}, uint8(0), []string{"gmail.com"}}})

	// The server's clock (unix seconds): a build's start, an erasure mark.
	qRollupNow = register(Query{Name: "stats_daily.now", SQL: "SELECT toUInt32(now())"})

	// What a build will count: the highest offset per topic and partition
	// of the accounts' rows in [from, to) (unix seconds). Arguments:
	// accounts, from, to.
	qRollupCover = register(Query{Name: "stats_daily.cover",
		SQL: "SELECT kafka_topic, kafka_partition, max(kafka_offset) FROM events " +
			"WHERE account_id IN (?) AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) GROUP BY kafka_topic, kafka_partition",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})

	// The rows per day and account of events in [from, to) (unix seconds),
	// for a rebuild's chunks. Arguments: from, to, all accounts (1) or one
	// (0), the account.
	qRollupDays = register(Query{Name: "stats_daily.rebuild_days",
		SQL: "SELECT toUInt32(toDate(timestamp, 'UTC')) AS r_day, account_id, count() FROM events " +
			"WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND (? = 1 OR account_id = ?) " +
			"GROUP BY r_day, account_id ORDER BY r_day, account_id",
		Sample: []any{uint32(1764201600), uint32(1764288000), uint8(1), ""}})

	// The marks written on or after an ingest date (for an update: the
	// days batches touched lately), per account, day, topic and partition.
	// Argument: the ingest date (YYYY-MM-DD).
	qRollupRecentMarks = register(Query{Name: "stats_marks.recent",
		SQL: "SELECT account_id, toUInt32(day), kafka_topic, kafka_partition, max(kafka_offset) FROM stats_marks " +
			"WHERE ingest_date >= toDate(?) GROUP BY account_id, day, kafka_topic, kafka_partition",
		Sample: []any{"2025-11-27"}})

	// The builds of the given days, any account. Argument: days.
	qRollupBuildsOfDays = register(Query{Name: "stats_daily.builds_of_days",
		SQL: "SELECT account_id, toUInt32(day), version, toUInt32(started), cover_topics, cover_partitions, cover_offsets FROM stats_daily " +
			"WHERE dim = 'build' AND has(?, toUInt32(day))",
		Sample: []any{[]uint32{20419}}})

	// The days of one address's events, for an erasure's marks. Arguments:
	// account, the address's hash (twice, see hashMatch).
	qRollupErasedDays = register(Query{Name: "stats_marks.erased_days",
		SQL:    "SELECT DISTINCT toUInt32(toDate(timestamp, 'UTC')) FROM events WHERE account_id = ? AND " + hashMatch,
		Sample: []any{"acme", sampleHash, sampleHash}})
)

// inAccounts expands a statement's "account_id IN (?)" to one placeholder
// per account and returns the arguments that start with them.
func inAccounts(sql string, accounts []string, rest ...any) (string, []any) {
	sql = strings.Replace(sql, "account_id IN (?)", "account_id IN (?"+strings.Repeat(", ?", len(accounts)-1)+")", 1)
	args := make([]any, 0, len(accounts)+len(rest))
	for _, a := range accounts {
		args = append(args, a)
	}
	return sql, append(args, rest...)
}
