-- One row per event of a Kafka message. Identity: (kafka_topic,
-- kafka_partition, kafka_offset, msg_index). Partitioned by the month the
-- batch was ingested (one value per insert), so every insert is one block in
-- one partition: one atomic part. Retention drops whole partitions.
CREATE TABLE IF NOT EXISTS events (
    ingest_date             Date,
    ingested_at             DateTime,
    kafka_topic             String,
    kafka_partition         UInt32,
    kafka_offset            UInt64,
    msg_index               UInt32,
    account_id              String,
    event                   String,
    type                    String,
    timestamp               DateTime,
    email                   String,
    email_norm              String,
    domain                  String,
    provider                String,
    address_valid           UInt8,
    sg_event_id             String,
    event_id_derived        UInt8,
    sg_message_id           String,
    smtp_id                 String,
    categories              Array(String),
    reason                  String,
    status                  String,
    response                String,
    attempt                 UInt32,
    bounce_type             String,
    bounce_classification   String,
    reason_code             String,
    rule                    String,
    producer_classification String,
    ip                      String,
    tls                     UInt8,
    url                     String,
    useragent               String,
    asm_group_id            Int64,
    from_email              String,
    subject                 String,
    custom_args             String,
    derived                 UInt8
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_date)
ORDER BY (account_id, event, timestamp, kafka_topic, kafka_partition, kafka_offset, msg_index)
;
-- Bad input: the raw bytes of a rejected message (msg_index -1) or array
-- element, why, and where it came from. Same identity and partitioning as
-- events.
CREATE TABLE IF NOT EXISTS dead_letters (
    ingest_date     Date,
    ingested_at     DateTime,
    kafka_topic     String,
    kafka_partition UInt32,
    kafka_offset    UInt64,
    msg_index       Int32,
    code            String,
    detail          String,
    raw             String,
    kafka_key       String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_date)
ORDER BY (kafka_topic, kafka_partition, kafka_offset, msg_index)
;
-- Suppression list changes. The newest version per (account, list, group,
-- address) wins; deleted = 1 means the address is off the list. version
-- orders by event time: unix seconds * 2, plus 1 for a removal, so a
-- removal wins a tie with an addition in the same second.
CREATE TABLE IF NOT EXISTS suppressions (
    account_id            String,
    list                  String,
    group_id              Int64,
    email_norm            String,
    email                 String,
    created               DateTime,
    reason                String,
    status                String,
    bounce_classification String,
    reason_code           String,
    deleted               UInt8,
    version               UInt64,
    source                String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (account_id, list, group_id, email_norm)
