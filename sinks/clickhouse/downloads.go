package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/analytics"
)

// # Activity CSV downloads
//
// A download's state is a row of activity_downloads per change (newest
// version wins); its file is rows of activity_download_parts, one per part
// of about 8 MiB, each written by one insert, read back one part per query
// (the table has one row per granule). So every API process can serve
// every download, and memory stays that of one part. Parts are partitioned
// by the day their download expires and DropExpiredDownloads drops the
// days past.

// PutDownload stores a download's state (a new version of it).
func (s *Store) PutDownload(ctx context.Context, d analytics.Download) error {
	version := uint64(time.Now().UnixNano())
	return s.insert(ctx, qInsertDownload, func(b driver.Batch) error {
		return b.Append(d.ID, d.Account, d.Query, d.Status, d.Rows, d.Total, d.Bytes, d.Parts, d.Error, d.Token,
			d.Created.UTC(), d.Updated.UTC(), d.Expires.UTC(), version)
	})
}

// Download returns a download's newest state by its id, whatever its
// account (the caller compares); false when there is none.
func (s *Store) Download(ctx context.Context, id string) (analytics.Download, bool, error) {
	var d analytics.Download
	rows, err := s.conn.Query(ctx, qDownload.SQL, id)
	if err != nil {
		return d, false, fmt.Errorf("%s: %w", qDownload.Name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return d, false, rows.Err()
	}
	if err := rows.Scan(&d.ID, &d.Account, &d.Query, &d.Status, &d.Rows, &d.Total, &d.Bytes, &d.Parts, &d.Error, &d.Token,
		&d.Created, &d.Updated, &d.Expires); err != nil {
		return d, false, fmt.Errorf("%s: %w", qDownload.Name, err)
	}
	d.Created, d.Updated, d.Expires = d.Created.UTC(), d.Updated.UTC(), d.Expires.UTC()
	return d, true, nil
}

// ActiveDownloads counts the account's pending downloads updated at or
// after since (older pending ones were abandoned by a process that
// stopped).
func (s *Store) ActiveDownloads(ctx context.Context, account string, since time.Time) (int, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, qActiveDownloads.SQL, account, unixSeconds(since)).Scan(&n); err != nil {
		return 0, fmt.Errorf("%s: %w", qActiveDownloads.Name, err)
	}
	return int(n), nil
}

// WriteDownloadPart stores part number part of d's file.
func (s *Store) WriteDownloadPart(ctx context.Context, d analytics.Download, part uint32, data []byte) error {
	return s.insert(ctx, qInsertDownloadPart, func(b driver.Batch) error {
		return b.Append(d.Expires.UTC(), d.ID, d.Account, part, data)
	})
}

// DownloadPart returns part number part of a download's file.
func (s *Store) DownloadPart(ctx context.Context, id string, part uint32) (string, error) {
	var data string
	if err := s.conn.QueryRow(ctx, qDownloadPart.SQL, id, part).Scan(&data); err != nil {
		return "", fmt.Errorf("%s: %w", qDownloadPart.Name, err)
	}
	return data, nil
}

// DropExpiredDownloads drops the files of downloads that expired before
// the UTC day of now (whole days: a file is kept until the day after it
// expired at most; the API refuses it from its expiry on).
func (s *Store) DropExpiredDownloads(ctx context.Context, now time.Time) error {
	var parts []string
	if err := collect(ctx, s.conn, qDownloadPartitions, &parts); err != nil {
		return err
	}
	today, _ := strconv.Atoi(now.UTC().Format("20060102"))
	for _, p := range parts {
		day, err := strconv.Atoi(strings.Trim(p, "'"))
		if err != nil || day >= today {
			continue
		}
		if err := s.conn.Exec(ctx, "ALTER TABLE activity_download_parts DROP PARTITION "+strconv.Itoa(day)); err != nil {
			return fmt.Errorf("drop download partition %d: %w", day, err)
		}
	}
	return nil
}

// ExportActivity calls each with the events of the account's messages
// that match f (nil: every message), in [from, to), newest first, each
// sg_event_id once, at most limit of them (the newest). total is called
// first with the number of events it will give.
func (s *Store) ExportActivity(ctx context.Context, account string, f *analytics.ActivityFilter, from, to time.Time, limit int,
	total func(uint64), each func(*analytics.ExportEvent) error) error {
	prefilter, pargs := activityNoPrefilter, []any(nil)
	if f != nil {
		msgs, margs, err := activityMessagesSQL(account, f, 1<<62)
		if err != nil {
			return err
		}
		prefilter, pargs = "AND sg_message_id GLOBAL IN (SELECT a_msg FROM ("+msgs+"))", margs
	}
	args := append([]any{account, unixSeconds(from), unixSeconds(to)}, pargs...)
	// The newest hours that hold max events: only those are sorted.
	rows, err := s.conn.Query(ctx, strings.Replace(qExportHours.SQL, activityNoPrefilter, prefilter, 1), args...)
	if err != nil {
		return fmt.Errorf("%s: %w", qExportHours.Name, err)
	}
	cutoff, n := unixSeconds(from), uint64(0)
	for n < uint64(limit) && rows.Next() {
		var hour uint32
		var c uint64
		if err := rows.Scan(&hour, &c); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", qExportHours.Name, err)
		}
		n += c
		if n >= uint64(limit) {
			cutoff = max32(cutoff, hour) // the oldest hour needed
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	total(min(n, uint64(limit)))
	args[1] = cutoff
	sql := strings.Replace(qExport.SQL, activityNoPrefilter, prefilter, 1)
	// Small blocks: what this process holds at a time is one block.
	bctx := ch.Context(ctx, ch.WithSettings(ch.Settings{"max_block_size": exportBlockRows}))
	rows, err = s.conn.Query(bctx, sql, append(args, uint64(limit))...)
	if err != nil {
		return fmt.Errorf("%s: %w", qExport.Name, err)
	}
	defer rows.Close()
	var e analytics.ExportEvent
	for rows.Next() {
		if err := rows.Scan(&e.Time, &e.MsgID, &e.Event, &e.Email, &e.FromEmail, &e.Subject, &e.Status, &e.Reason, &e.Type,
			&e.BounceType, &e.URL, &e.UserAgent, &e.IP, &e.Categories, &e.AsmGroupID, &e.SGEventID); err != nil {
			return fmt.Errorf("%s: %w", qExport.Name, err)
		}
		if err := each(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// exportBlockRows is the most rows of one block of an export's answer.
const exportBlockRows = 4096

func max32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

var downloadColumns = []string{"download_uuid", "account_id", "query", "status", "rows", "total", "bytes", "parts", "error", "token",
	"created", "updated", "expires", "version"}

const exportColumns = "timestamp, sg_message_id, event, email, from_email, subject, status, reason, type, bounce_type, url, useragent, ip, categories, asm_group_id, sg_event_id"

var (
	qInsertDownload     = register(Query{Name: "activity_downloads.insert", SQL: insertSQL("activity_downloads", downloadColumns), Insert: true})
	qInsertDownloadPart = register(Query{Name: "activity_download_parts.insert",
		SQL: insertSQL("activity_download_parts", []string{"expires", "download_uuid", "account_id", "part", "data"}), Insert: true})

	// A download's newest state. Argument: its id.
	qDownload = register(Query{Name: "activity_downloads.get",
		SQL: "SELECT download_uuid, argMax(account_id, version), argMax(query, version), argMax(status, version), argMax(rows, version), " +
			"argMax(total, version), argMax(bytes, version), argMax(parts, version), argMax(error, version), argMax(token, version), " +
			"argMax(created, version), argMax(updated, version), argMax(expires, version) " +
			"FROM activity_downloads WHERE download_uuid = ? GROUP BY download_uuid",
		Sample: []any{"00000000-0000-0000-0000-000000000000"}})

	// An account's pending downloads updated since a time. Arguments:
	// account, unix seconds.
	qActiveDownloads = register(Query{Name: "activity_downloads.active",
		SQL: "SELECT count() FROM (SELECT argMax(status, version) AS d_status, argMax(updated, version) AS d_updated " +
			"FROM activity_downloads WHERE account_id = ? GROUP BY download_uuid) WHERE d_status = 'pending' AND d_updated >= toDateTime(?)",
		Sample: []any{"acme", uint32(1764201600)}})

	// One part of a download's file. Arguments: id, part.
	qDownloadPart = register(Query{Name: "activity_download_parts.get",
		SQL:    "SELECT data FROM activity_download_parts WHERE download_uuid = ? AND part = ? LIMIT 1",
		Sample: []any{"00000000-0000-0000-0000-000000000000", uint32(0)}})

	// The partitions (expiry days, YYYYMMDD) of the download files.
	qDownloadPartitions = register(Query{Name: "activity_download_parts.partitions",
		SQL: "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'activity_download_parts' AND active"})

	// Events (each sg_event_id once: a resend has its event's time, so
	// the same hour) per hour (unix seconds of its start), newest first, of an
	// export. Arguments: account, from, to (unix seconds), the prefilter's.
	qExportHours = register(Query{Name: "activity.export.hours",
		SQL: "SELECT toUInt32(toStartOfHour(timestamp)) AS x_hour, uniqExact(sg_event_id) FROM events " +
			"WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND sg_message_id != '' " + activityNoPrefilter +
			" GROUP BY x_hour ORDER BY x_hour DESC",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000)}})

	// The events of an export, newest first, each sg_event_id once.
	// Arguments: account, from, to
	// (unix seconds), the prefilter's, the limit.
	qExport = register(Query{Name: "activity.export",
		SQL: "SELECT " + exportColumns + " FROM events " +
			"WHERE account_id = ? AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND sg_message_id != '' " + activityNoPrefilter +
			" ORDER BY timestamp DESC, sg_event_id LIMIT 1 BY sg_event_id LIMIT ?",
		Sample: []any{"acme", uint32(1764201600), uint32(1764288000), uint64(10)}})
)
