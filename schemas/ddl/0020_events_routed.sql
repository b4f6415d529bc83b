-- Where an event stored from its routed copy came from (docs/scaling.md,
-- "Re-routing"): the sink group copies an event found in another partition
-- than its recipient's suppression slice to partition p of TOPIC.routed,
-- and stores it from there: kafka_topic, kafka_partition and kafka_offset
-- are then the copy's (TOPIC.routed, p and its offset; msg_index stays the
-- source's), source_partition and source_offset the partition and offset
-- of the message in TOPIC it was copied from. 0 for every other row. The
-- routed partition's consumer skips a copy whose source offset is at or
-- below the highest source_offset stored from that source partition, which
-- makes a copy sent twice land once.
ALTER TABLE events ADD COLUMN source_partition UInt32
;
ALTER TABLE events ADD COLUMN source_offset UInt64
