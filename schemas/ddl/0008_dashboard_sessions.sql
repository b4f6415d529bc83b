-- Dashboard login sessions, shared by every bouncer api process. The
-- session's cookie holds a random id; only its SHA-256 (hex) is stored.
-- Rows of one session merge on read: the latest seen counts (written at
-- most every 5 minutes per session) and ended = 1 (a logout, or a login
-- that took its place under the per-account cap) holds for good. A session
-- ends 12 hours after created at the latest: rows older than that are
-- never read, and whole months can be dropped.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    session_hash String,
    account_id   String,
    key_id       String,
    key_hash     String,
    created      DateTime,
    seen         DateTime,
    ended        UInt8,
    version      UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(created)
ORDER BY session_hash
