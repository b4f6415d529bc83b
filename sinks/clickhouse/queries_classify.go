package clickhouse

// Statements of the report of what no rule knows (classify.go): stored
// bounces and deferrals whose classification no text rule decided
// (events.decided_by 'code' or 'none'), grouped by their reply text with
// addresses, IP addresses, ids and numbers masked.

// unmatchedText is the masked form of an event's reply text: the reason
// (bounces) or response (deferrals), at most 8 KiB (as the classifier
// reads it), lower-cased, white space folded, then addresses, IPv4 and
// IPv6 addresses, ids (tokens that mix letters and digits) and the
// remaining digit runs replaced by <addr>, <ip>, <id> and <n>.
const unmatchedText = "replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(" +
	"replaceRegexpAll(replaceRegexpAll(lower(substring(if(reason != '', reason, response), 1, 8192)), '\\\\s+', ' '), '^ | $', ''), " +
	"'[^ <>()\\\\[\\\\]\"\\',;:=]+@[^ <>()\\\\[\\\\]\"\\',;:=]+', '<addr>'), " +
	"'\\\\b\\\\d{1,3}(\\\\.\\\\d{1,3}){3}\\\\b|\\\\b[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}:[0-9a-f]{1,4}\\\\b', '<ip>'), " +
	"'\\\\b[0-9a-z_+.-]*([0-9][0-9a-z_+.-]*[a-z]|[a-z][0-9a-z_+.-]*[0-9])[0-9a-z_+.-]*\\\\b', '<id>'), " +
	"'\\\\d+', '<n>'), '<n>(\\\\.<n>)+', '<n>')"

// unmatchedWhere selects the window's bounces and deferrals. Arguments:
// every account (1) or one (0), the account, since, until (unix seconds).
const unmatchedWhere = " WHERE (? = 1 OR account_id = ?) AND event IN ('bounce', 'deferred') AND derived = 0 " +
	"AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?)"

var (
	// The groups, most frequent first. Arguments: as unmatchedWhere, then
	// the limit.
	qUnmatchedTexts = register(Query{Name: "classify.unmatched",
		SQL: "SELECT " + unmatchedText + " AS u_text, " +
			"extract(lower(if(reason != '', reason, response)), '\\\\b[245][0-9][0-9]\\\\b') AS u_reply, " +
			"extract(lower(if(reason != '', reason, response)), '\\\\b[245]\\\\.[0-9]{1,3}\\\\.[0-9]{1,3}\\\\b') AS u_status, " +
			"count() AS n, countIf(decided_by = 'none'), " +
			"arraySlice(arraySort(groupUniqArray(if(provider = '', 'other', provider))), 1, 10), " +
			"arraySlice(arraySort(groupUniqArrayIf(rule, decided_by = 'code')), 1, 5), " +
			"argMax(if(reason != '', reason, response), timestamp), max(timestamp) " +
			"FROM events" + unmatchedWhere + " AND decided_by IN ('code', 'none') " +
			"GROUP BY u_text, u_reply, u_status ORDER BY n DESC, u_text LIMIT ?",
		Sample: []any{uint8(1), "", uint32(1764201600), uint32(1764288000), uint64(50)}})

	// The window's totals: every bounce and deferral, those no text rule
	// decided, those stored before decided_by. Arguments: as
	// unmatchedWhere.
	qUnmatchedTotals = register(Query{Name: "classify.unmatched_totals",
		SQL:    "SELECT count(), countIf(decided_by IN ('code', 'none')), countIf(decided_by = '') FROM events" + unmatchedWhere,
		Sample: []any{uint8(1), "", uint32(1764201600), uint32(1764288000)}})
)
