-- Where in time the events of an account's messages are, per day, for the
-- email activity API's time filter (GET /v3/messages with last_event_time
-- BETWEEN ...): written by every stats build of an (account, day) (bouncer
-- rollups rebuild|update; sinks/clickhouse activity_days.go). first and
-- last are the earliest and latest event time of the messages with an
-- event on the day (both 0 when there are none), read after seen_*: per
-- topic and partition an offset of a stored row, so every batch at or
-- below it was stored when first and last were read. A reader uses a
-- day's latest version only when every mark of the day (stats_marks) is at
-- or below seen, and then also reads the days of marks above seen (batches
-- stored later). Rebuildable: a build replaces it.
CREATE TABLE IF NOT EXISTS activity_windows (
    account_id      String,
    day             Date,
    version         UInt64,
    started         DateTime,
    first           DateTime,
    last            DateTime,
    seen_topics     Array(String),
    seen_partitions Array(UInt32),
    seen_offsets    Array(UInt64)
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, day)
