-- Webhook delivery log: one row per attempt to POST a batch to an endpoint,
-- and one per batch parked in a retry tier or given up. Written by the
-- workers in batches from a bounded buffer: rows still buffered when a
-- worker dies are lost (delivery never depends on this table; the retry
-- tiers in Kafka do). The API reads endpoint state from it.
--   result      ok, http_error, timeout, connection, oauth (no access token:
--               the token request failed), gone (410), parked
--               (written to a retry tier), exhausted (given up: schedule
--               exhausted, endpoint disabled or deleted)
--   status      HTTP status, 0 when there was no response
--   response    what the account may see: the HTTP status and its standard
--               name, a failure class (refused, timeout, tls, dns, blocked,
--               connection) or why a batch was parked; never the receiver's
--               body or an error text (rows of versions before 2026-12 may)
--   circuit     the endpoint's breaker state on that worker afterwards
--               (closed, half-open, open)
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    date         Date,
    at           DateTime,
    account_id   String,
    endpoint_id  String,
    webhook_id   String,
    attempt      UInt16,
    result       String,
    status       UInt16,
    duration_ms  UInt32,
    response     String,
    events       UInt32,
    circuit      String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, endpoint_id, at)
;
-- Batches delivery gave up on (also in the Kafka dead-letter topic), for
-- listing and replay through the API. batch is the batch as JSON (the
-- events as the producer sent them). A batch can be written twice (a retry
-- after a failed write) and a replay writes it again with replayed_at set:
-- the row with the highest version per (account_id, endpoint_id,
-- webhook_id) is the current one. replay_topic is the first retry tier of
-- the worker that gave the batch up: the API replays it there.
CREATE TABLE IF NOT EXISTS webhook_failed_batches (
    date            Date,
    failed_at       DateTime,
    account_id      String,
    endpoint_id     String,
    webhook_id      String,
    version         UInt64,
    attempts        UInt16,
    reason          String,
    last_status     UInt16,
    last_error      String,
    events          UInt32,
    batch           String,
    replay_topic    String,
    replayed_at     DateTime,
    replay_id       String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(date)
ORDER BY (account_id, endpoint_id, webhook_id)
