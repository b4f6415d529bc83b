-- What an open's or a click's user agent and ip say, classified at ingest
-- (enrich.Agents, enrich.Geo): ua_browser (uap-core's family, e.g.
-- Chrome), ua_client (the mail client: Gmail, Outlook, Apple Mail, ... or
-- the browser), ua_device (Desktop, Webmail, Phone, Tablet, Other);
-- geo_country (ISO 3166-1 alpha-2) and geo_region (the ISO 3166-2
-- subdivision code without the country), from the operator's MaxMind-format
-- database (BOUNCER_GEOIP_DB). Empty for other events, without a database,
-- and for rows stored before these columns existed until bouncer rollups
-- backfill fills them.
ALTER TABLE events ADD COLUMN ua_browser String
;
ALTER TABLE events ADD COLUMN ua_client String
;
ALTER TABLE events ADD COLUMN ua_device String
;
ALTER TABLE events ADD COLUMN geo_country String
;
ALTER TABLE events ADD COLUMN geo_region String
