-- Bounce forwarding settings per account (SendGrid's
-- /v3/mail_settings/forward_bounce). Every change is a new row; the row with
-- the highest version (unix nanoseconds of the change) is the account's
-- setting. email is '' when none was ever set.
CREATE TABLE IF NOT EXISTS forwarding_settings (
    account_id String,
    enabled    UInt8,
    email      String,
    updated    DateTime,
    version    UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY account_id
