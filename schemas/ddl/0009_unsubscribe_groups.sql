-- Unsubscribe groups per account (SendGrid's /v3/asm/groups). Every change
-- is a new row. Two API processes may create a group with the same id at the
-- same moment: each creation has its own nonce (part of the key, so the two
-- never merge) and the one with the smallest nonce (it starts with the wall
-- clock of the create, zero-padded; created holds that clock) owns the id;
-- the other retries with another id. The state of a group is its owning
-- creation's row with the highest version (unix nanoseconds of the change);
-- deleted = 1 means the group is gone (its id is never reused).
CREATE TABLE IF NOT EXISTS unsubscribe_groups (
    account_id  String,
    id          Int64,
    nonce       String,
    created     UInt64,
    name        String,
    description String,
    is_default  UInt8,
    deleted     UInt8,
    updated     DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (account_id, id, nonce)
