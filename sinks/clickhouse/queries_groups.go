package clickhouse

// Statements of unsubscribe groups (table unsubscribe_groups, migration
// 0009). A group id is owned by its creation with the smallest nonce (the
// nonce starts with the wall clock of the create, zero-padded); its state
// is that creation's row with the highest version.
// Unsubscribe counts and implicit group ids come from the suppressions
// table (current entries of the unsubscribes list with a group id).

var groupColumns = []string{"account_id", "id", "nonce", "created", "name", "description", "is_default", "deleted", "updated", "version"}

var (
	qInsertGroup = register(Query{Name: "unsubscribe_groups.insert", SQL: insertSQL("unsubscribe_groups", groupColumns), Insert: true})

	// Every group record of an account (deleted ones too): id, owning
	// nonce and created, newest name, description, is_default, deleted,
	// and the newest version.
	// Arguments: account twice.
	qGroupsList = register(Query{Name: "unsubscribe_groups.list",
		SQL: "SELECT id, nonce, any(created), argMax(name, version), argMax(description, version), argMax(is_default, version), argMax(deleted, version), max(version) " +
			"FROM unsubscribe_groups WHERE account_id = ? AND (id, nonce) IN " +
			"(SELECT id, min(nonce) FROM unsubscribe_groups WHERE account_id = ? GROUP BY id) " +
			"GROUP BY id, nonce ORDER BY id",
		Sample: []any{"acme", "acme"}})

	// The owning nonce of one group id. Arguments: account, id.
	qGroupOwner = register(Query{Name: "unsubscribe_groups.owner",
		SQL:    "SELECT min(nonce) FROM unsubscribe_groups WHERE account_id = ? AND id = ? GROUP BY id",
		Sample: []any{"acme", int64(7)}})

	// The highest group id an account ever used, in groups or in
	// unsubscribes (removed ones too), so a new group never takes an id
	// that mail was already sent with. Arguments: account twice.
	qGroupsMaxID = register(Query{Name: "unsubscribe_groups.max_id",
		SQL: "SELECT greatest((SELECT max(id) FROM unsubscribe_groups WHERE account_id = ?), " +
			"(SELECT max(group_id) FROM suppressions WHERE account_id = ? AND list = 'unsubscribes'))",
		Sample: []any{"acme", "acme"}})

	// Current unsubscribes per group id. Argument: account.
	qGroupCounts = register(Query{Name: "unsubscribe_groups.counts",
		SQL: "SELECT group_id, count() FROM (SELECT group_id, email_norm, argMax(deleted, version) AS del FROM suppressions " +
			"WHERE account_id = ? AND list = 'unsubscribes' AND group_id != 0 GROUP BY group_id, email_norm) " +
			"WHERE del = 0 GROUP BY group_id ORDER BY group_id",
		Sample: []any{"acme"}})

	// Current group unsubscribes of every group, of one address or all
	// (''), newest first. Arguments: account, address twice, offset,
	// limit.
	qGroupSuppressions = register(Query{Name: "unsubscribe_groups.suppressions",
		SQL: "SELECT group_id, email_norm, argMax(email, version) AS e, argMax(created, version) AS c, argMax(deleted, version) AS del " +
			"FROM suppressions WHERE account_id = ? AND list = 'unsubscribes' AND group_id != 0 AND (? = '' OR email_norm = ?) " +
			"GROUP BY group_id, email_norm HAVING del = 0 ORDER BY c DESC, email_norm, group_id LIMIT ?, ?",
		Sample: []any{"acme", "", "", uint64(0), uint64(500)}})

	// Which of some addresses are unsubscribed from one group. Arguments:
	// account, group, addresses (Array(String)).
	qGroupMembers = register(Query{Name: "unsubscribe_groups.members",
		SQL: "SELECT email_norm, argMax(email, version) AS e, argMax(created, version) AS c, argMax(deleted, version) AS del " +
			"FROM suppressions WHERE account_id = ? AND list = 'unsubscribes' AND group_id = ? AND has(?, email_norm) " +
			"GROUP BY email_norm HAVING del = 0 ORDER BY email_norm",
		Sample: []any{"acme", int64(7), []string{"kim@example.com"}}})
)
