-- Email activity CSV downloads (POST /v3/messages/download, api
-- downloads.go). activity_downloads holds each download's state, one row
-- per change, the newest version wins: pending while the API process that
-- took the request writes the file (rows, total and updated show its
-- progress), then ready or failed. token is the secret its download links
-- are signed with. activity_download_parts holds the file itself, in parts
-- of about 8 MiB of CSV, each written by one insert; a ready download has
-- parts 0 .. parts-1. The parts are partitioned by the day the download
-- expires, and bouncer api drops the partitions of days past; one row per
-- granule, so reading one part reads only that part.
CREATE TABLE IF NOT EXISTS activity_downloads (
    download_uuid String,
    account_id    String,
    query         String,
    status        String,
    rows          UInt64,
    total         UInt64,
    bytes         UInt64,
    parts         UInt32,
    error         String,
    token         String,
    created       DateTime,
    updated       DateTime,
    expires       DateTime,
    version       UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (download_uuid)
;
CREATE TABLE IF NOT EXISTS activity_download_parts (
    expires       Date,
    download_uuid String,
    account_id    String,
    part          UInt32,
    data          String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(expires)
ORDER BY (download_uuid, part)
SETTINGS index_granularity = 1
