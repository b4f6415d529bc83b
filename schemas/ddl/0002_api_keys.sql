-- API keys. A key is SG.<key_id>.<secret>; only the SHA-256 of the secret
-- (hex) is stored. The newest version per key_id wins; revoked = 1 disables
-- the key for good. version is unix nanoseconds of the change.
CREATE TABLE IF NOT EXISTS api_keys (
    account_id String,
    key_id     String,
    key_hash   String,
    name       String,
    scopes     Array(String),
    created    DateTime,
    revoked    UInt8,
    version    UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY key_id
