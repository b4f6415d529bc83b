package clickhouse

// Statements of the privacy erasure (erase.go). Mutations (ALTER TABLE ...
// DELETE) are stored by ClickHouse with their text (system.mutations and a
// file beside the table's data) long after they ran, so no mutation names
// the address: tables keyed by the address delete by the SHA-256 of
// email_norm, and tables that hold the address in free text delete the
// rows found by a SELECT by their identity hash.

// normSQL is schemas.NormalizeAddress of the email column in ClickHouse:
// ASCII white space trimmed, ASCII letters lower-cased (ClickHouse's lower
// is ASCII-only).
const normSQL = `lower(replaceRegexpAll(email, '^[\\t-\\r ]+|[\\t-\\r ]+$', ''))`

// hashMatch matches a row of the address by the SHA-256 of its email_norm
// or of its email normalised as today. Arguments: the hash, twice.
const hashMatch = "(lower(hex(SHA256(email_norm))) = ? OR lower(hex(SHA256(" + normSQL + "))) = ?)"

const sampleHash = "d648b243a3e817eaa3309e00e183483f2867baadf522099f0c2121770536b25a"

var erasureColumns = []string{"account_id", "erasure_id", "email_sha256", "requested_by", "erased_at", "tables", "rows"}

var (
	// Tables of the current database, to skip optional ones that are absent.
	qEraseTables = register(Query{Name: "erase.tables",
		SQL: "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name"})

	// Columns of a table, for tables whose layout belongs to another part
	// of bouncer (the webhook delivery log). Argument: table.
	qEraseColumns = register(Query{Name: "erase.columns",
		SQL:    "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ? ORDER BY name",
		Sample: []any{"dead_letters"}})

	// The list entries (any state) of one address, so their removal can be
	// announced on the change log. Arguments: account, email_norm.
	qEraseSuppressionKeys = register(Query{Name: "erase.suppression_keys",
		SQL: "SELECT list, group_id, argMax(email, version) AS e, max(created) FROM suppressions WHERE account_id = ? AND email_norm = ? " +
			"GROUP BY list, group_id ORDER BY list, group_id",
		Sample: []any{"acme", "kim@example.com"}})

	// Rows of an address in the tables keyed by it. Arguments: account,
	// lower-case hex SHA-256 of email_norm (twice for events and
	// suppressions). events and suppressions also match a row whose email,
	// normalised as today (normSQL), is the address: rows written before
	// addresses folded ASCII case only carry an email_norm that folded more
	// (the Kelvin sign as k), and they are the address's rows too.
	qEraseCountEvents = register(Query{Name: "erase.count_events",
		SQL:    "SELECT count() FROM events WHERE account_id = ? AND " + hashMatch,
		Sample: []any{"acme", sampleHash, sampleHash}})
	qEraseEvents = register(Query{Name: "erase.events",
		SQL:    "ALTER TABLE events DELETE WHERE account_id = ? AND " + hashMatch,
		Sample: []any{"acme", sampleHash, sampleHash}})
	qEraseCountSuppressions = register(Query{Name: "erase.count_suppressions",
		SQL:    "SELECT count() FROM suppressions WHERE account_id = ? AND " + hashMatch,
		Sample: []any{"acme", sampleHash, sampleHash}})
	qEraseSuppressions = register(Query{Name: "erase.suppressions",
		SQL:    "ALTER TABLE suppressions DELETE WHERE account_id = ? AND " + hashMatch,
		Sample: []any{"acme", sampleHash, sampleHash}})
	qEraseCountHistory = register(Query{Name: "erase.count_recipient_history",
		SQL:    "SELECT count() FROM recipient_history WHERE account_id = ? AND lower(hex(SHA256(email_norm))) = ?",
		Sample: []any{"acme", sampleHash}})
	qEraseHistory = register(Query{Name: "erase.recipient_history",
		SQL:    "ALTER TABLE recipient_history DELETE WHERE account_id = ? AND lower(hex(SHA256(email_norm))) = ?",
		Sample: []any{"acme", sampleHash}})

	// Dead letters hold raw bytes and no trusted account: a row is the
	// account's when its raw bytes name the account ("account_id":"A") or,
	// for the default account, name none. This finds the candidates: rows
	// whose raw bytes hold the address (ASCII case-insensitively) or any
	// backslash (the address may be JSON-escaped, "ann\u0040x.example");
	// Erase keeps those that mention the address as a whole one
	// (schemas.MentionsAddress), so joann@x.example.org's rows are not
	// ann@x.example's. Arguments: address, account pattern (RE2), 1 for the
	// default account, 1 to match every account.
	qEraseFindDeadLetters = register(Query{Name: "erase.find_dead_letters",
		SQL: "SELECT cityHash64(kafka_topic, kafka_partition, kafka_offset, msg_index), raw FROM dead_letters " +
			"WHERE (positionCaseInsensitive(raw, ?) > 0 OR position(raw, '\\\\') > 0) " +
			"AND (match(raw, ?) OR (? = 1 AND position(raw, '\"account_id\"') = 0) OR ? = 1)",
		Sample: []any{"kim@example.com", `"account_id"\s*:\s*"acme"`, uint8(0), uint8(0)}})
	// Argument: the identity hashes found (at most eraseChunk), in decimal,
	// comma-separated.
	qEraseDeadLetters = register(Query{Name: "erase.dead_letters",
		SQL:    "ALTER TABLE dead_letters DELETE WHERE has(splitByChar(',', ?), toString(cityHash64(kafka_topic, kafka_partition, kafka_offset, msg_index)))",
		Sample: []any{"1,2"}})

	// Mutations of a table not finished yet. Argument: table.
	qErasePendingMutations = register(Query{Name: "erase.pending_mutations",
		SQL:    "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0",
		Sample: []any{"events"}})

	qInsertErasures = register(Query{Name: "erasures.insert", SQL: insertSQL("erasures", erasureColumns), Insert: true})

	// An account's erasure records, newest first. Arguments: account,
	// offset, limit.
	qErasures = register(Query{Name: "erasures.list",
		SQL: "SELECT erasure_id, email_sha256, requested_by, erased_at, tables, rows FROM erasures WHERE account_id = ? " +
			"ORDER BY erased_at DESC, erasure_id LIMIT ?, ?",
		Sample: []any{"acme", uint64(0), uint64(100)}})
)
