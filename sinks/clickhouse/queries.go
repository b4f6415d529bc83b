package clickhouse

import "strings"

// Query is one statement the project runs against ClickHouse. Every query
// lives in this registry so a test can render each with its sample
// arguments and run it on ClickHouse 18.16 and on a current release.
type Query struct {
	Name string
	SQL  string
	// Sample holds example arguments for the ? placeholders (for a query)
	// or one example row (for an insert).
	Sample []any
	// Insert marks batch inserts, run with PrepareBatch.
	Insert bool
}

var registry []Query

func register(q Query) Query {
	registry = append(registry, q)
	return q
}

// Registry returns every registered query.
func Registry() []Query { return append([]Query(nil), registry...) }

func insertSQL(table string, columns []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ")"
}

var eventColumns = []string{
	"ingest_date", "ingested_at", "kafka_topic", "kafka_partition", "kafka_offset", "msg_index",
	"account_id", "event", "type", "timestamp", "email", "email_norm", "domain", "provider",
	"address_valid", "sg_event_id", "event_id_derived", "sg_message_id", "smtp_id", "categories",
	"reason", "status", "response", "attempt", "bounce_type", "bounce_classification",
	"reason_code", "rule", "producer_classification", "ip", "tls", "url", "useragent",
	"asm_group_id", "from_email", "subject", "custom_args", "derived", "decided_by",
	"ua_browser", "ua_client", "ua_device", "geo_country", "geo_region",
	"source_partition", "source_offset",
}

var deadLetterColumns = []string{
	"ingest_date", "ingested_at", "kafka_topic", "kafka_partition", "kafka_offset", "msg_index",
	"code", "detail", "raw", "kafka_key",
}

var suppressionColumns = []string{
	"account_id", "list", "group_id", "email_norm", "email", "created", "reason", "status",
	"bounce_classification", "reason_code", "deleted", "version", "source",
}

var (
	qInsertEvents       = register(Query{Name: "events.insert", SQL: insertSQL("events", eventColumns), Insert: true})
	qInsertDeadLetters  = register(Query{Name: "dead_letters.insert", SQL: insertSQL("dead_letters", deadLetterColumns), Insert: true})
	qInsertSuppressions = register(Query{Name: "suppressions.insert", SQL: insertSQL("suppressions", suppressionColumns), Insert: true})

	// High-water marks: count() tells an empty partition from offset 0.
	qEventsHighWater = register(Query{Name: "events.high_water",
		SQL:    "SELECT count(), max(kafka_offset) FROM events WHERE kafka_topic = ? AND kafka_partition = ?",
		Sample: []any{"email-events", uint32(0)}})
	// The routed partition's marks (pipeline.RoutedMarks): per source
	// partition, the highest source offset stored from it.
	qEventsRoutedMarks = register(Query{Name: "events.routed_marks",
		SQL:    "SELECT source_partition, max(source_offset) FROM events WHERE kafka_topic = ? AND kafka_partition = ? GROUP BY source_partition",
		Sample: []any{"email-events.routed", uint32(0)}})
	qDeadLettersHighWater = register(Query{Name: "dead_letters.high_water",
		SQL:    "SELECT count(), max(kafka_offset) FROM dead_letters WHERE kafka_topic = ? AND kafka_partition = ?",
		Sample: []any{"email-events", uint32(0)}})

	qMigrationsCreate = register(Query{Name: "schema_migrations.create",
		SQL: "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version"})
	qMigrationsApplied = register(Query{Name: "schema_migrations.applied",
		SQL: "SELECT version FROM schema_migrations ORDER BY version"})
	qMigrationsRecord = register(Query{Name: "schema_migrations.record",
		SQL: insertSQL("schema_migrations", []string{"version", "name", "applied_at"}), Insert: true})

	// Retention: whole partitions by ingest month.
	qPartitions = register(Query{Name: "retention.partitions",
		SQL:    "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition",
		Sample: []any{"events"}})

	// Summaries used by the demo, the bench and the tests.
	// Consumed events and the ones bouncer derived (dropped events).
	qCountEvents   = register(Query{Name: "events.count", SQL: "SELECT countIf(derived = 0), countIf(derived = 1) FROM events"})
	qEventIdentity = register(Query{Name: "events.identity",
		SQL: "SELECT count(), uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM events"})
	qCountDeadLetters = register(Query{Name: "dead_letters.count", SQL: "SELECT count() FROM dead_letters"})
	qEventsByType     = register(Query{Name: "summary.events_by_type",
		SQL: "SELECT event, count() AS n FROM events GROUP BY event ORDER BY n DESC, event"})
	qBouncesByClass = register(Query{Name: "summary.bounces_by_classification",
		SQL: "SELECT bounce_classification, bounce_type, count() AS n FROM events WHERE event = 'bounce' GROUP BY bounce_classification, bounce_type ORDER BY n DESC, bounce_classification, bounce_type"})
	qSuppressionsByList = register(Query{Name: "summary.suppressions_by_list",
		SQL: "SELECT list, count() AS n FROM (SELECT account_id, list, group_id, email_norm, argMax(deleted, version) AS del FROM suppressions GROUP BY account_id, list, group_id, email_norm) WHERE del = 0 GROUP BY list ORDER BY list"})
	qDeadLettersList = register(Query{Name: "dead_letters.list",
		SQL:    "SELECT kafka_topic, kafka_partition, kafka_offset, msg_index, code, detail, raw, kafka_key, ingested_at FROM dead_letters WHERE (? = '' OR code = ?) ORDER BY kafka_topic, kafka_partition, kafka_offset, msg_index LIMIT ?",
		Sample: []any{"", "", uint64(10)}})
)

var (
	qDropEventsPartition = register(Query{Name: "retention.drop_events",
		SQL: "ALTER TABLE events DROP PARTITION ?", Sample: []any{uint32(190001)}})
	qDropDeadLettersPartition = register(Query{Name: "retention.drop_dead_letters",
		SQL: "ALTER TABLE dead_letters DROP PARTITION ?", Sample: []any{uint32(190001)}})
	qDropHistoryPartition = register(Query{Name: "retention.drop_recipient_history",
		SQL: "ALTER TABLE recipient_history DROP PARTITION ?", Sample: []any{uint32(190001)}})
	qDropStatsMarksPartition = register(Query{Name: "retention.drop_stats_marks",
		SQL: "ALTER TABLE stats_marks DROP PARTITION ?", Sample: []any{uint32(190001)}})
	qDropMessageIndexPartition = register(Query{Name: "retention.drop_message_index",
		SQL: "ALTER TABLE message_index DROP PARTITION ?", Sample: []any{uint32(190001)}})
)
