-- A subscription's opt-in to bouncer's own fields in delivered events (the
-- "bouncer" object: bounce_type, reason_code, rule); 0 (the default): the
-- events carry SendGrid's fields only.
ALTER TABLE webhooks ADD COLUMN bouncer_fields UInt8
