-- Stats rollups: the stats API's counts per account, day and dimension,
-- built from the events table (sinks/clickhouse rollups.go, docs/analytics.md).
--
-- stats_marks: which (account, day) a batch of events touches, written by
-- the sink before the batch's events, with the highest offset of the
-- batch's rows of that account and day. A day whose marks are all covered
-- by its latest build (kafka_offset <= the build's offset for the same
-- topic and partition) is read from stats_daily; any other day is read from
-- the events table. Privacy erasures write a mark with kafka_topic = '' and
-- kafka_offset = the unix time after which a build sees the erasure.
CREATE TABLE IF NOT EXISTS stats_marks (
    ingest_date     Date,
    account_id      String,
    day             Date,
    kafka_topic     String,
    kafka_partition UInt32,
    kafka_offset    UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_date)
ORDER BY (account_id, day, kafka_topic, kafka_partition, kafka_offset)
;
-- stats_daily: one build of one (account, day) is one insert (one part per
-- shard): the counts of every dimension (dim '' global, 'category',
-- 'provider', 'domain', 'reason') and one row with dim 'build' that holds
-- what the build saw (started: the server's time when it began; cover_*:
-- the highest offset per topic and partition of the day's rows it counted).
-- Readers use only rows whose version is the day's latest build's. The
-- counts are those of analytics.StatCounts; reason rows (key = reason_code)
-- also carry classification, bounce_type and the newest diagnostic text.
CREATE TABLE IF NOT EXISTS stats_daily (
    account_id        String,
    day               Date,
    dim               String,
    key               String,
    classification    String,
    bounce_type       String,
    version           UInt64,
    processed         UInt64,
    derived_drops     UInt64,
    drops             UInt64,
    bounce_drops      UInt64,
    spam_report_drops UInt64,
    unsubscribe_drops UInt64,
    invalid_drops     UInt64,
    delivered         UInt64,
    deferred          UInt64,
    bounces           UInt64,
    blocks            UInt64,
    opens             UInt64,
    unique_opens      UInt64,
    clicks            UInt64,
    unique_clicks     UInt64,
    spam_reports      UInt64,
    unsubscribes      UInt64,
    example           String,
    example_at        DateTime,
    started           DateTime,
    cover_topics      Array(String),
    cover_partitions  Array(UInt32),
    cover_offsets     Array(UInt64)
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (account_id, dim, day, key, classification, bounce_type)
