package clickhouse

// Statements of bouncer reclassify (reclassify.go): the stored bounces of
// a window or of some addresses, the stored changes of their list entries,
// and the mutation that stores new classifications.

// reclassifyColumns are the columns of a stored bounce, in the order
// scanBounce reads them.
const reclassifyColumns = "kafka_topic, kafka_partition, kafka_offset, msg_index, account_id, email, email_norm, type, sg_event_id, " +
	"reason, response, status, toInt64(timestamp), address_valid, bounce_type, bounce_classification, reason_code, rule, decided_by, " +
	reclassifyID

// reclassifyID is an event's identity as one number (as erasures name
// rows).
const reclassifyID = "cityHash64(kafka_topic, kafka_partition, kafka_offset, msg_index)"

var (
	// The stored bounces of a window. Arguments: every account (1) or one
	// (0), the account, since, until (unix seconds).
	qReclassifyBounces = register(Query{Name: "reclassify.bounces",
		SQL: "SELECT " + reclassifyColumns + " FROM events WHERE (? = 1 OR account_id = ?) AND event = 'bounce' AND derived = 0 " +
			"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)",
		Sample: []any{uint8(1), "", uint32(1764201600), uint32(1764288000)}})

	// Every stored bounce of some addresses of one account. Arguments:
	// account, the normalised addresses.
	qReclassifyAddressBounces = register(Query{Name: "reclassify.address_bounces",
		SQL:    "SELECT " + reclassifyColumns + " FROM events WHERE account_id = ? AND event = 'bounce' AND derived = 0 AND has(?, email_norm)",
		Sample: []any{"acme", []string{"kim@example.com"}}})

	// The stored changes (every version still stored) of the bounces,
	// blocks and invalid_emails entries of some addresses of one account.
	// Arguments: account, the normalised addresses.
	qReclassifyListRows = register(Query{Name: "reclassify.list_rows",
		SQL: "SELECT list, email_norm, version, deleted, source FROM suppressions WHERE account_id = ? AND group_id = 0 " +
			"AND list IN ('bounces', 'blocks', 'invalid_emails') AND has(?, email_norm)",
		Sample: []any{"acme", []string{"kim@example.com"}}})

	// Stores new classifications: each changed row (by identity) gets the
	// values at its index in the value arrays. Arguments, per column
	// (bounce_type, bounce_classification, reason_code, rule, decided_by):
	// the distinct values, the identities, each identity's index into the
	// values; then the identities again.
	qReclassifyUpdate = register(Query{Name: "reclassify.update",
		SQL: "ALTER TABLE events UPDATE " +
			"bounce_type = arrayElement(?, transform(" + reclassifyID + ", ?, ?, toUInt32(0))), " +
			"bounce_classification = arrayElement(?, transform(" + reclassifyID + ", ?, ?, toUInt32(0))), " +
			"reason_code = arrayElement(?, transform(" + reclassifyID + ", ?, ?, toUInt32(0))), " +
			"rule = arrayElement(?, transform(" + reclassifyID + ", ?, ?, toUInt32(0))), " +
			"decided_by = arrayElement(?, transform(" + reclassifyID + ", ?, ?, toUInt32(0))) " +
			"WHERE event = 'bounce' AND has(?, " + reclassifyID + ")",
		Sample: func() []any {
			ids, at := []uint64{42}, []uint32{1}
			var args []any
			for _, v := range []string{"soft", "Mailbox Unavailable", "mailbox_full", "ops.full", "text"} {
				args = append(args, []string{v}, ids, at)
			}
			return append(args, ids)
		}()})
)
