package clickhouse

// Statements of the HTTP API (package api, wired in cmd/bouncer): suppression
// reads and bulk removals, bounce classification counts, API keys.
//
// Current list state is, per (account_id, list, group_id, email_norm), the
// row with the highest version (argMax, not FINAL: the table may hold
// unmerged parts); an entry whose newest row has deleted = 1 is absent.

var sessionColumns = []string{"session_hash", "account_id", "key_id", "key_hash", "created", "seen", "ended", "version"}

var apiKeyColumns = []string{"account_id", "key_id", "key_hash", "name", "scopes", "created", "revoked", "version"}

var (
	// Arguments: account, list, group, LIKE pattern on email_norm, created
	// from and to (unix seconds, inclusive), bounce kind ('', 'hard' or
	// 'soft': status 4.x.x) twice, offset, limit.
	qSuppressionsList = register(Query{Name: "suppressions.list",
		SQL: "SELECT email_norm, argMax(email, version) AS e, argMax(created, version) AS c, argMax(reason, version) AS r, " +
			"argMax(status, version) AS st, argMax(bounce_classification, version) AS bc, argMax(reason_code, version) AS rc, " +
			"argMax(deleted, version) AS del " +
			"FROM suppressions WHERE account_id = ? AND list = ? AND group_id = ? AND email_norm LIKE ? " +
			"GROUP BY email_norm HAVING del = 0 AND toUInt32(c) >= ? AND toUInt32(c) <= ? " +
			"AND (? = '' OR (substring(st, 1, 1) = '4') = (? = 'soft')) " +
			"ORDER BY c DESC, email_norm LIMIT ?, ?",
		Sample: []any{"acme", "bounces", int64(0), "kim%", uint32(0), uint32(4000000000), "soft", "soft", uint64(0), uint64(500)}})

	// How many current entries the list query would select (no paging).
	// Arguments: as suppressions.list without offset and limit.
	qSuppressionsCount = register(Query{Name: "suppressions.count",
		SQL: "SELECT count() FROM (SELECT email_norm, argMax(created, version) AS c, argMax(status, version) AS st, argMax(deleted, version) AS del " +
			"FROM suppressions WHERE account_id = ? AND list = ? AND group_id = ? AND email_norm LIKE ? " +
			"GROUP BY email_norm HAVING del = 0 AND toUInt32(c) >= ? AND toUInt32(c) <= ? " +
			"AND (? = '' OR (substring(st, 1, 1) = '4') = (? = 'soft')))",
		Sample: []any{"acme", "bounces", int64(0), "kim%", uint32(0), uint32(4000000000), "hard", "hard"}})

	// Removes every current entry of one list: a deleted = 1 row per entry,
	// written by the server (memory stays flat whatever the list's size),
	// stamped at the given time or, for an entry dated later, at the
	// entry's own time (version + 1: the removal of that second), so the
	// removal always wins. Arguments: created, version, source, account,
	// list, group.
	qSuppressionsDeleteAll = register(Query{Name: "suppressions.delete_all",
		SQL: insertSQL("suppressions", suppressionColumns) + " " +
			"SELECT account_id, list, group_id, email_norm, argMax(email, version), greatest(toDateTime(?), max(created)), '', '', '', '', 1, " +
			"greatest(toUInt64(?), max(version) + 1), ? " +
			"FROM suppressions WHERE account_id = ? AND list = ? AND group_id = ? " +
			"GROUP BY account_id, list, group_id, email_norm HAVING argMax(deleted, version) = 0",
		Sample: []any{uint32(1764201600), uint64(3528403201), "api", "acme", "bounces", int64(0)}})

	// Bounce events per UTC day and classification, each sg_event_id once.
	// Arguments: account, from (inclusive), to (exclusive), unix seconds.
	qBounceClassifications = register(Query{Name: "events.bounce_classifications",
		SQL: "SELECT toString(toDate(timestamp, 'UTC')) AS day, bounce_classification AS class, uniqExact(sg_event_id) AS n " +
			"FROM events WHERE account_id = ? AND event = 'bounce' AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
			"GROUP BY day, class ORDER BY day, n DESC, class",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})

	// Bounce events of one classification per UTC day and recipient domain.
	// Arguments: account, classification, from, to.
	qBounceClassificationDomains = register(Query{Name: "events.bounce_classification_domains",
		SQL: "SELECT toString(toDate(timestamp, 'UTC')) AS day, domain AS d, uniqExact(sg_event_id) AS n " +
			"FROM events WHERE account_id = ? AND event = 'bounce' AND bounce_classification = ? " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) " +
			"GROUP BY day, d ORDER BY day, n DESC, d",
		Sample: []any{"acme", "Invalid Address", uint32(1764201600), uint32(1764288000)}})

	qInsertAPIKeys = register(Query{Name: "api_keys.insert", SQL: insertSQL("api_keys", apiKeyColumns), Insert: true})

	// The newest state of every key, optionally of one account ('' = all).
	qAPIKeys = register(Query{Name: "api_keys.list",
		SQL: "SELECT key_id, argMax(account_id, version) AS a, argMax(key_hash, version) AS h, argMax(name, version) AS nm, " +
			"argMax(scopes, version) AS sc, argMax(created, version) AS cr, argMax(revoked, version) AS rv " +
			"FROM api_keys WHERE (? = '' OR account_id = ?) GROUP BY key_id ORDER BY a, cr, key_id",
		Sample: []any{"", ""}})

	qInsertSessions = register(Query{Name: "dashboard_sessions.insert", SQL: insertSQL("dashboard_sessions", sessionColumns), Insert: true})

	// The dashboard sessions created at or after a time that have not
	// ended, or only one. Rows merge: the latest seen, ended for good (max,
	// not argMax: a use written after a logout does not undo it).
	// Arguments: created from (unix seconds), session hash ('' = all) twice.
	qSessions = register(Query{Name: "dashboard_sessions.list",
		SQL: "SELECT session_hash, any(account_id), any(key_id), any(key_hash), min(created), max(seen) " +
			"FROM dashboard_sessions WHERE created >= toDateTime(?) AND (? = '' OR session_hash = ?) " +
			"GROUP BY session_hash HAVING max(ended) = 0",
		Sample: []any{uint32(1764201600), "", ""}})
)
