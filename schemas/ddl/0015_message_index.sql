-- Where in time each message's events are, so the email activity API finds
-- a message (by id) or a recipient's messages without scanning the
-- account's events: the events table is ordered by (account, event, time),
-- and a time window turns a scan into a few granules. Written by the sink
-- before each batch's events (so every stored event is inside a window of
-- its message), per batch: kind 'msg' rows (key = sg_message_id) with the
-- earliest and latest event time of the message in the batch, kind 'to'
-- rows (key = email_norm) naming the recipient's messages. A message's
-- window is the min(first) and max(last) of its rows; a replayed batch
-- only repeats rows. bouncer rollups rebuild fills it for older events.
CREATE TABLE IF NOT EXISTS message_index (
    ingest_date     Date,
    kafka_partition UInt32,
    account_id      String,
    kind            String,
    key             String,
    sg_message_id   String,
    first           DateTime,
    last            DateTime
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ingest_date)
ORDER BY (account_id, kind, key)
