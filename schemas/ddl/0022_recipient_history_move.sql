-- Moves the rows of the table 0021 swapped out into recipient_history:
-- Migrate runs an INSERT ... SELECT from a table as a move, one partition
-- at a time, newest first (the policy reads the last month or so, which is
-- back first), dropping each partition from the source once it is copied,
-- so a move cut short copies only what is left when run again (the
-- partition it was copying may be copied twice: the policy tolerates a
-- repeated row, see 0003). On a cluster it runs on one replica of each
-- shard, local table to local table, after SYSTEM SYNC REPLICA: the rows
-- stay on their shard. Until a partition is moved, the policy does not see
-- its rows. Two processes migrating at once (workers started together)
-- may both copy a partition, and the one that passed 0021's guard just
-- before the other swapped may have created recipient_history_g256 again,
-- empty: dropped here.
INSERT INTO recipient_history (ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type)
SELECT ingest_date, account_id, email_norm, timestamp, event, reason_code, bounce_type FROM recipient_history_g8192
;
DROP TABLE IF EXISTS recipient_history_g8192
;
DROP TABLE IF EXISTS recipient_history_g256
