package clickhouse

// Statements of `bouncer suppressions export` (cmd/bouncer/suppressions.go).

var (
	// One page of a list's current entries in address order, after a
	// cursor (keyset paging: each page costs the same however deep it is,
	// and an entry changed while exporting is neither skipped nor repeated).
	// Arguments: account, list, group, cursor (the last email_norm of the
	// previous page, '' for the first), page size.
	qSuppressionsExportPage = register(Query{Name: "suppressions.export_page",
		SQL: "SELECT email_norm, argMax(email, version) AS e, argMax(created, version) AS c, argMax(reason, version) AS r, " +
			"argMax(status, version) AS st, argMax(bounce_classification, version) AS bc, argMax(reason_code, version) AS rc, " +
			"argMax(deleted, version) AS del " +
			"FROM suppressions WHERE account_id = ? AND list = ? AND group_id = ? AND email_norm > ? " +
			"GROUP BY email_norm HAVING del = 0 ORDER BY email_norm LIMIT ?",
		Sample: []any{"acme", "bounces", int64(0), "", uint64(10000)}})
)
