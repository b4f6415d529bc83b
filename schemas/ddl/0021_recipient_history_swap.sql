-- recipient_history gets index_granularity 256 instead of the default 8192.
-- The policy reads a batch's recipients (hundreds to thousands of random
-- addresses) and ClickHouse reads at least one whole granule of every part
-- per address: with 8192 rows a granule, a read of 1,000 recipients read
-- up to 8 M rows per part (most of the table, every batch). With 256 it
-- reads about 256 to 512 rows per recipient and part. The primary index
-- this keeps in memory grows from about 0.007 to 0.21 bytes per row (0.2 GB
-- per billion rows); 64 rows a granule made the read slower again on 18.16
-- (a read of 500 recipients in 2 M rows: 1.7 M rows read at 8192, 125,000
-- at 256, 34,000 at 64 but two to three times the time of 256).
--
-- ClickHouse cannot change a table's granularity, so this migration swaps
-- in a new table and 0022 moves the old table's rows into it. The swap
-- comes first so that writers (a worker still running the previous
-- version) write into the new table at once: nothing is written to the old
-- one after the swap, and nothing is lost between a copy and a swap.
-- Migrate skips both statements when recipient_history_g8192 exists (the
-- swap happened; a migration cut short runs again from its first
-- statement). On a cluster both run on every server, on the local tables.
CREATE TABLE IF NOT EXISTS recipient_history_g256 (
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
SETTINGS index_granularity = 256
;
RENAME TABLE recipient_history TO recipient_history_g8192, recipient_history_g256 TO recipient_history
