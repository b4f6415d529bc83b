-- Privacy erasures: one row per erased address, the proof that it was done.
-- The address itself is not kept, only the lower-case hex SHA-256 of its
-- normalised form (trimmed, lower-cased), so "was this address erased?" can
-- be answered by whoever knows the address. tables and rows are parallel
-- arrays: the tables touched and the rows removed from each.
CREATE TABLE IF NOT EXISTS erasures (
    account_id   String,
    erasure_id   String,
    email_sha256 String,
    requested_by String,
    erased_at    DateTime,
    tables       Array(String),
    rows         Array(UInt64)
) ENGINE = MergeTree
ORDER BY (account_id, erased_at, erasure_id)
