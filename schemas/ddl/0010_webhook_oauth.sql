-- OAuth 2.0 client credentials of webhook subscriptions (SendGrid's
-- oauth_client_id, oauth_client_secret and oauth_token_url): delivery gets a
-- bearer token from oauth_token_url with the client-credentials grant and
-- sends it with every batch. '' in all three: no OAuth.
--   oauth_secret_sealed  the client secret, sealed like secret_sealed (bound to
--                        account_id, id and its purpose); never in the clear
-- An ADD COLUMN whose column exists already is skipped by bouncer migrate
-- (18.16 has no ADD COLUMN IF NOT EXISTS), so a migration cut short runs again.
ALTER TABLE webhooks ADD COLUMN oauth_client_id String
;
ALTER TABLE webhooks ADD COLUMN oauth_token_url String
;
ALTER TABLE webhooks ADD COLUMN oauth_secret_sealed String
