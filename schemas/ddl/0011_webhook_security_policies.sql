-- Webhook security policies (SendGrid's /v3/user/webhooks/security/policies),
-- one row per change, like webhooks: the row with the highest version per
-- (account_id, id) is the policy; deleted = 1 there means it was deleted.
--   oauth_*              OAuth 2.0 client credentials ('' client id: none);
--                        oauth_secret_sealed sealed like the webhooks' secrets
--                        (bound to account_id, id and its purpose)
--   signing_key_sealed   the P-256 key signing SendGrid's signature headers
--                        ('' unless signed = 1); public_key its public half
-- webhooks.security_policy is the id of the policy a subscription uses ('':
-- none).
CREATE TABLE IF NOT EXISTS webhook_security_policies (
    account_id           String,
    id                   String,
    version              UInt64,
    deleted              UInt8,
    name                 String,
    oauth_client_id      String,
    oauth_token_url      String,
    oauth_scopes         Array(String),
    oauth_secret_sealed  String,
    signed               UInt8,
    signing_key_sealed   String,
    public_key           String,
    created              DateTime,
    updated              DateTime
) ENGINE = ReplacingMergeTree(version)
ORDER BY (account_id, id)
;
ALTER TABLE webhooks ADD COLUMN security_policy String
