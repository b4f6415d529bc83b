package clickhouse

// Statements of the dashboard's own routes (/bouncer/v1/stats/bounce_reasons
// and /bouncer/v1/stats/top_domains). Counts follow the stats API: read from
// the events table, each sg_event_id once.

var (
	// Bounce events per reason code, classification and bounce type, most
	// first; the example is the newest diagnostic text. Arguments: account,
	// from, to (unix seconds), limit.
	qDashboardReasons = register(Query{Name: "dashboard.bounce_reasons",
		SQL: "SELECT reason_code, bounce_classification, bounce_type, " +
			"uniqExactIf(sg_event_id, type = 'bounce') AS bounces, " +
			"uniqExactIf(sg_event_id, type = 'blocked') AS blocks, " +
			"argMax(reason, timestamp) AS example " +
			"FROM events WHERE account_id = ? AND event = 'bounce' " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
			"GROUP BY reason_code, bounce_classification, bounce_type " +
			"ORDER BY bounces + blocks DESC, reason_code, bounce_classification, bounce_type LIMIT ?",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000), 10}})

	// The stats counts of the recipient domains with the most requests
	// (processed events and drops), most first. The subquery picks those
	// domains from the processed and dropped events alone (a range of the
	// table's key), so the counts are computed for them only, not for every
	// domain. GLOBAL IN: on a cluster the top domains are the whole
	// table's, not each shard's (on one server it is IN). Arguments: account, from, to (unix seconds), then the same
	// again and the limit for the subquery, then the limit.
	qDashboardDomains = register(Query{Name: "dashboard.top_domains",
		SQL: "SELECT domain AS d, " + statsCounts + ", " +
			"uniqExactIf(sg_event_id, event IN ('processed', 'dropped')) AS volume " +
			"FROM events WHERE " + statsWhere + " AND domain != '' " +
			"AND domain GLOBAL IN (SELECT domain FROM events WHERE account_id = ? " +
			"AND event IN ('processed', 'dropped') AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
			"AND domain != '' GROUP BY domain ORDER BY uniqExact(sg_event_id) DESC, domain LIMIT ?) " +
			"GROUP BY d ORDER BY volume DESC, d LIMIT ?",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000), "acme", uint32(1764201600), uint32(1764288000), 10, 10}})
)
