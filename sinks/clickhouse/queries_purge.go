package clickhouse

// Statements of the bounce purge settings (table bounce_purge_settings,
// migration 0012): an account's setting is its row with the highest
// version (argMax, not FINAL: the table may hold unmerged parts).

var purgeColumns = []string{"account_id", "enabled", "hard_days", "soft_days", "updated", "version"}

var (
	qInsertPurge = register(Query{Name: "bounce_purge_settings.insert", SQL: insertSQL("bounce_purge_settings", purgeColumns), Insert: true})

	// One account's newest setting. Argument: account.
	qPurgeGet = register(Query{Name: "bounce_purge_settings.get",
		SQL: "SELECT argMax(enabled, version), argMax(hard_days, version), argMax(soft_days, version), argMax(updated, version) " +
			"FROM bounce_purge_settings WHERE account_id = ? GROUP BY account_id",
		Sample: []any{"acme"}})

	// Every account whose newest setting is enabled with some days.
	qPurgeEnabled = register(Query{Name: "bounce_purge_settings.enabled",
		SQL: "SELECT account_id, argMax(enabled, version) AS en, argMax(hard_days, version) AS h, argMax(soft_days, version) AS s, argMax(updated, version) " +
			"FROM bounce_purge_settings GROUP BY account_id HAVING en = 1 AND (h > 0 OR s > 0) ORDER BY account_id"})
)
