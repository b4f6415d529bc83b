package clickhouse

// Statements of bounce forwarding: the per-account settings the API writes
// and the forwarder reads. An account's setting is the row with the highest
// version (argMax, not FINAL: the table may hold unmerged parts).

var forwardingColumns = []string{"account_id", "enabled", "email", "updated", "version"}

var (
	qInsertForwarding = register(Query{Name: "forwarding_settings.insert", SQL: insertSQL("forwarding_settings", forwardingColumns), Insert: true})

	// One account's newest setting. Argument: account.
	qForwardingGet = register(Query{Name: "forwarding_settings.get",
		SQL: "SELECT argMax(enabled, version) AS en, argMax(email, version) AS em, argMax(updated, version) AS up " +
			"FROM forwarding_settings WHERE account_id = ? GROUP BY account_id",
		Sample: []any{"acme"}})

	// Every account whose newest setting is enabled, with its address.
	qForwardingEnabled = register(Query{Name: "forwarding_settings.enabled",
		SQL: "SELECT account_id, argMax(enabled, version) AS en, argMax(email, version) AS em, argMax(updated, version) AS up " +
			"FROM forwarding_settings GROUP BY account_id HAVING en = 1 AND em != '' ORDER BY account_id"})
)
