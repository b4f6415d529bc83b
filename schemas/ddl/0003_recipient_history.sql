-- The soft-bounce policy's memory: each recipient's deliveries and the soft
-- bounces that can escalate (disabled mailbox, 4xx user unknown, mailbox
-- full), ordered by recipient so the policy reads a few recipients without
-- scanning the events table. Written before the events of the same batch; a
-- retried batch may write a row twice, which the policy tolerates (a
-- repeated event has the same time, so it neither extends a span nor moves
-- a start).
CREATE TABLE IF NOT EXISTS recipient_history (
    ingest_date Date,
    account_id  String,
    email_norm  String,
    timestamp   DateTime,
    event       String,
    reason_code String,
    bounce_type String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_date)
ORDER BY (account_id, email_norm, timestamp)
