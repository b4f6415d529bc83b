-- Bounce purge settings per account (SendGrid's
-- /v3/mail_settings/bounce_purge). Every change is a new row; the row with
-- the highest version (unix nanoseconds of the change) is the account's
-- setting. hard_days and soft_days are 0 when not set (no purge of that
-- kind).
CREATE TABLE IF NOT EXISTS bounce_purge_settings (
    account_id String,
    enabled    UInt8,
    hard_days  UInt32,
    soft_days  UInt32,
    updated    DateTime,
    version    UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY account_id
