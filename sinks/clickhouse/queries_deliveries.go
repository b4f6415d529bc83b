package clickhouse

var deliveryColumns = []string{
	"date", "at", "account_id", "endpoint_id", "webhook_id", "attempt", "result", "status",
	"duration_ms", "response", "events", "circuit",
}

var failedBatchColumns = []string{
	"date", "failed_at", "account_id", "endpoint_id", "webhook_id", "version", "attempts", "reason",
	"last_status", "last_error", "events", "batch", "replay_topic", "replayed_at", "replay_id",
}

// The current row of each failed batch: the highest version.
const failedCurrent = "SELECT failed_at, account_id, endpoint_id, webhook_id, attempts, reason, last_status, last_error, events, batch, replay_topic, replayed_at, replay_id " +
	"FROM webhook_failed_batches WHERE account_id = ? AND endpoint_id = ? AND failed_at >= toDateTime(?) " +
	"ORDER BY version DESC LIMIT 1 BY webhook_id"

var (
	qInsertDeliveries = register(Query{Name: "webhook_deliveries.insert",
		SQL: insertSQL("webhook_deliveries", deliveryColumns), Insert: true})
	qInsertFailedBatches = register(Query{Name: "webhook_failed_batches.insert",
		SQL: insertSQL("webhook_failed_batches", failedBatchColumns), Insert: true})

	qEndpointDeliveryState = register(Query{Name: "webhook_deliveries.endpoint_state",
		SQL: "SELECT toUInt32(maxIf(at, result = 'ok')), toUInt32(maxIf(at, result IN ('http_error', 'timeout', 'connection', 'gone', 'oauth'))), " +
			"argMaxIf(circuit, at, circuit != ''), toUInt32(max(at)), count(), " +
			"toUInt32(maxIf(at, result = 'oauth')), argMaxIf(response, at, result = 'oauth') " +
			"FROM webhook_deliveries WHERE account_id = ? AND endpoint_id = ?",
		Sample: []any{"default", "0d7f2a6e-0000-4000-8000-000000000001"}})
	qEndpointDeliveries = register(Query{Name: "webhook_deliveries.recent",
		SQL: "SELECT at, webhook_id, attempt, result, status, duration_ms, response, events, circuit " +
			"FROM webhook_deliveries WHERE account_id = ? AND endpoint_id = ? ORDER BY at DESC, webhook_id, attempt DESC LIMIT ?",
		Sample: []any{"default", "0d7f2a6e-0000-4000-8000-000000000001", uint64(50)}})
	// The first failure after the last success (or ever, without one);
	// toUInt32 of the empty min is 0.
	qEndpointFailingSince = register(Query{Name: "webhook_deliveries.failing_since",
		SQL: "SELECT toUInt32(min(at)) FROM webhook_deliveries WHERE account_id = ? AND endpoint_id = ? " +
			"AND result IN ('http_error', 'timeout', 'connection', 'gone', 'oauth') AND at > (SELECT maxIf(at, result = 'ok') " +
			"FROM webhook_deliveries WHERE account_id = ? AND endpoint_id = ?)",
		Sample: []any{"default", "0d7f2a6e-0000-4000-8000-000000000001", "default", "0d7f2a6e-0000-4000-8000-000000000001"}})
	qFailedBatches = register(Query{Name: "webhook_failed_batches.list",
		SQL:    "SELECT * FROM (" + failedCurrent + ") ORDER BY failed_at, webhook_id LIMIT ?",
		Sample: []any{"default", "0d7f2a6e-0000-4000-8000-000000000001", uint32(0), uint64(100)}})
	qFailedBatch = register(Query{Name: "webhook_failed_batches.get",
		SQL: "SELECT failed_at, account_id, endpoint_id, webhook_id, attempts, reason, last_status, last_error, events, batch, replay_topic, replayed_at, replay_id " +
			"FROM webhook_failed_batches WHERE account_id = ? AND endpoint_id = ? AND webhook_id = ? ORDER BY version DESC LIMIT 1",
		Sample: []any{"default", "0d7f2a6e-0000-4000-8000-000000000001", "msg_abc"}})
)
