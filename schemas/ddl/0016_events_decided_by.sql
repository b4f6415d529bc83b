-- What decided a bounce's or deferral's classification at ingest
-- (enrich.Result.DecidedBy): 'text' (a rule's text condition matched the
-- reply), 'code' (a rule on the reply or status code alone), 'none' (no
-- rule: Unclassified); '' for other events and for rows stored before this
-- column existed. bouncer classify --unmatched reports the texts that are
-- not 'text'; bouncer reclassify sets it with the classification it stores.
ALTER TABLE events ADD COLUMN decided_by String
