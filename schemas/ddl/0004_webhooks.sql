-- Webhook subscriptions (SendGrid's Event Webhooks), one row per change.
-- The row with the highest version per (account_id, id) is the subscription;
-- deleted = 1 there means it was deleted (a tombstone). Every write is a whole
-- row, so several API processes and the delivery workers can write without
-- coordination (the newest version wins). version is unix nanoseconds of the
-- change, at least one more than the version it was derived from.
--
-- Secrets are sealed with internal/secrets (AES-256-GCM under the key in
-- BOUNCER_SECRET_KEY, which ClickHouse never sees) and bound to account_id and
-- id: plain SQL on this table never reveals a signing secret or private key.
--   secret_sealed            the Standard Webhooks secret (raw key bytes)
--   prev_secret_sealed       the secret before the last rotation; it keeps
--                            signing until prev_secret_not_after
--   signing_key_sealed       SendGrid's Signed Event Webhook P-256 private key
--                            (PKCS#8 DER); '' when signing was never enabled
--   public_key               its public part, base64 DER, as SendGrid shows it
-- disabled_at / disabled_reason are set by delivery when it gives up on the
-- endpoint (410 Gone, failing for too long) and cleared when the customer
-- re-enables it. A DateTime of 0 (1970-01-01 00:00:00) means unset.
CREATE TABLE IF NOT EXISTS webhooks (
    account_id               String,
    id                       String,
    version                  UInt64,
    deleted                  UInt8,
    url                      String,
    enabled                  UInt8,
    friendly_name            String,
    event_processed          UInt8,
    event_dropped            UInt8,
    event_delivered          UInt8,
    event_deferred           UInt8,
    event_bounce             UInt8,
    event_open               UInt8,
    event_click              UInt8,
    event_spamreport         UInt8,
    event_unsubscribe        UInt8,
    event_group_unsubscribe  UInt8,
    event_group_resubscribe  UInt8,
    secret_sealed            String,
    prev_secret_sealed       String,
    prev_secret_not_after    DateTime,
    signed                   UInt8,
    signing_key_sealed       String,
    public_key               String,
    disabled_at              DateTime,
    disabled_reason          String,
    created                  DateTime,
    updated                  DateTime
) ENGINE = ReplacingMergeTree(version)
ORDER BY (account_id, id)
