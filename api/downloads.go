package api

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
)

// Email activity CSV downloads (SendGrid's POST /v3/messages/download and
// GET /v3/messages/download/{download_uuid}). A request records a pending
// download and this process writes the CSV in the background, through the
// shared CSV writer (csvlist.CSV: every cell escaped against formula
// injection), in parts of downloadPartSize bytes that the store keeps, so
// memory stays that of one part whatever the number of rows. The GET
// answers the progress while it is pending and, once ready, a link signed
// with the download's own secret that works for downloadLinkTTL without a
// key (SendGrid's presigned URL), until the download expires
// (downloadTTL after it was asked for, SendGrid's 3 days).

// DownloadStore keeps downloads and their files; nil disables the routes.
type DownloadStore interface {
	PutDownload(ctx context.Context, d analytics.Download) error
	// Download returns a download by id, whatever its account.
	Download(ctx context.Context, id string) (analytics.Download, bool, error)
	// ActiveDownloads counts the account's pending downloads updated at or
	// after since.
	ActiveDownloads(ctx context.Context, account string, since time.Time) (int, error)
	WriteDownloadPart(ctx context.Context, d analytics.Download, part uint32, data []byte) error
	DownloadPart(ctx context.Context, id string, part uint32) (string, error)
	DropExpiredDownloads(ctx context.Context, now time.Time) error
	// ExportActivity calls each with the events of the account's messages
	// matching f in [from, to), newest first, at most limit; total first.
	ExportActivity(ctx context.Context, account string, f *analytics.ActivityFilter, from, to time.Time, limit int,
		total func(uint64), each func(*analytics.ExportEvent) error) error
}

// Bounds of the downloads.
const (
	downloadTTL       = 72 * time.Hour      // SendGrid: the link expires in 3 days
	downloadLinkTTL   = 5 * time.Minute     // a signed link's life (SendGrid's presigned URLs: 300 s)
	downloadWindow    = 30 * 24 * time.Hour // SendGrid: the events of the last 30 days
	downloadMaxEvents = 1_000_000           // SendGrid: at most the last million events
	downloadPartSize  = 8 << 20
	// downloadStale is how long a pending download may go without progress
	// before it counts as abandoned (its process stopped).
	downloadStale = 5 * time.Minute
	// downloadProgressEvery is how often (events) a pending download's
	// progress is stored between parts.
	downloadProgressEvery = 100_000
)

// downloadFilePath is the route of the signed links.
const downloadFilePath = "/bouncer/v1/messages/download/{download_uuid}/file"

// handleDownloadCreate: POST /v3/messages/download?query=...
func (s *server) handleDownloadCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.cfg.Downloads
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "activity downloads are not available on this server"))
			return
		}
		q := r.URL.Query().Get("query")
		var f *analytics.ActivityFilter // none: every message
		if q != "" {
			var err error
			if f, err = parseActivityQuery(q); err != nil {
				writeError(w, s.log, r, err)
				return
			}
		}
		acct, now := account(r), s.now().UTC()
		if err := st.DropExpiredDownloads(r.Context(), now); err != nil {
			writeError(w, s.log, r, err)
			return
		}
		n, err := st.ActiveDownloads(r.Context(), acct, now.Add(-downloadStale))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if n > 0 {
			writeError(w, s.log, r, errorf(ERateLimited, "", "a download of this account is being produced: wait until it is ready (GET /v3/messages/download/{download_uuid})"))
			return
		}
		select {
		case s.downloads <- struct{}{}:
		default:
			writeError(w, s.log, r, errorf(ERateLimited, "", "this server is producing as many downloads as it may: try again in a minute"))
			return
		}
		token := make([]byte, 32)
		rand.Read(token)
		d := analytics.Download{ID: uuid.NewString(), Account: acct, Query: q, Status: analytics.DownloadPending,
			Token: hex.EncodeToString(token), Created: now, Updated: now, Expires: now.Add(downloadTTL)}
		if err := st.PutDownload(r.Context(), d); err != nil {
			<-s.downloads
			writeError(w, s.log, r, err)
			return
		}
		go func() {
			defer func() { <-s.downloads }()
			s.produceDownload(st, d, f)
		}()
		writeJSON(w, http.StatusAccepted, map[string]any{
			"status":        analytics.DownloadPending,
			"message":       "The CSV is being produced: GET /v3/messages/download/" + d.ID + " tells its progress, and its link when it is ready.",
			"download_uuid": d.ID,
		})
	})
}

// produceDownload writes d's file and its final state. It runs on
// Config.Context: when that ends, the download fails.
func (s *server) produceDownload(st DownloadStore, d analytics.Download, f *analytics.ActivityFilter) {
	ctx := s.cfg.Context
	save := func() error {
		d.Updated = s.now().UTC()
		return st.PutDownload(ctx, d)
	}
	pw := &partWriter{flush: func(b []byte) error {
		if err := st.WriteDownloadPart(ctx, d, d.Parts, b); err != nil {
			return err
		}
		d.Parts++
		d.Bytes += uint64(len(b))
		return save()
	}}
	out := csvlist.NewCSV(pw)
	err := out.Write(analytics.ExportColumns)
	var rec []string
	if err == nil {
		err = st.ExportActivity(ctx, d.Account, f, d.Created.Add(-downloadWindow), d.Created.Add(time.Second), downloadMaxEvents,
			func(total uint64) {
				d.Total = total
				if err := save(); err != nil {
					s.log.Warn("activity download: storing its progress", "download", d.ID, "err", err)
				}
			},
			func(e *analytics.ExportEvent) error {
				rec = e.Record(rec[:0])
				if err := out.Write(rec); err != nil {
					return err
				}
				d.Rows++
				if d.Rows%downloadProgressEvery == 0 {
					return save()
				}
				return nil
			})
	}
	if err == nil {
		err = out.Flush()
	}
	if err == nil {
		err = pw.Close()
	}
	if err == nil {
		d.Status, d.Total = analytics.DownloadReady, d.Rows
		err = save()
	}
	if err != nil {
		s.log.Error("activity download failed", "account", d.Account, "download", d.ID, "err", err)
		d.Status, d.Error = analytics.DownloadFailed, "producing the file failed; request it again"
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Updated = s.now().UTC()
		if err := st.PutDownload(ctx, d); err != nil {
			s.log.Error("activity download: recording the failure", "download", d.ID, "err", err)
		}
	}
}

// partWriter collects written bytes into parts of downloadPartSize and
// hands each to flush; Close flushes the rest.
type partWriter struct {
	buf   []byte
	flush func([]byte) error
}

func (p *partWriter) Write(b []byte) (int, error) {
	if p.buf == nil {
		p.buf = make([]byte, 0, downloadPartSize+128<<10)
	}
	p.buf = append(p.buf, b...)
	if len(p.buf) >= downloadPartSize {
		if err := p.flush(p.buf); err != nil {
			return 0, err
		}
		p.buf = p.buf[:0]
	}
	return len(b), nil
}

func (p *partWriter) Close() error {
	if len(p.buf) == 0 {
		return nil
	}
	err := p.flush(p.buf)
	p.buf = p.buf[:0]
	return err
}

// downloadOf returns the account's download of the request's
// download_uuid, or SendGrid's 404 when there is none or it expired.
func (s *server) downloadOf(r *http.Request, acct string) (analytics.Download, error) {
	id := r.PathValue("download_uuid")
	gone := errorf(ENotFound, "download_uuid", "download token is invalid or expired")
	if _, err := uuid.Parse(id); err != nil {
		return analytics.Download{}, gone
	}
	d, ok, err := s.cfg.Downloads.Download(r.Context(), id)
	switch {
	case err != nil:
		return d, err
	case !ok || d.Account != acct || !s.now().Before(d.Expires):
		return d, gone
	}
	return d, nil
}

// handleDownloadGet: GET /v3/messages/download/{download_uuid}.
func (s *server) handleDownloadGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Downloads == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "activity downloads are not available on this server"))
			return
		}
		d, err := s.downloadOf(r, account(r))
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		now := s.now().UTC()
		switch {
		case d.Status == analytics.DownloadFailed:
			writeError(w, s.log, r, errorf(ENotFound, "download_uuid", "the download failed: %s", d.Error))
			return
		case d.Status == analytics.DownloadPending && now.Sub(d.Updated) > downloadStale:
			writeError(w, s.log, r, errorf(ENotFound, "download_uuid", "the download was abandoned (the server producing it stopped): request it again"))
			return
		case d.Status == analytics.DownloadPending:
			writeJSON(w, http.StatusAccepted, map[string]any{"status": d.Status, "rows": d.Rows, "total": d.Total,
				"message": fmt.Sprintf("%d of %d events written; ask again shortly", d.Rows, d.Total)})
			return
		}
		expires := min(now.Add(downloadLinkTTL).Unix(), d.Expires.Unix())
		link := s.publicURL(r) + "/bouncer/v1/messages/download/" + d.ID + "/file?" + url.Values{
			"expires":   {strconv.FormatInt(expires, 10)},
			"signature": {downloadSignature(d, expires)},
		}.Encode()
		writeJSON(w, http.StatusOK, map[string]any{"presigned_url": link, "status": d.Status, "rows": d.Rows, "bytes": d.Bytes,
			"expires_at": analytics.ActivityTime(d.Expires)})
	})
}

// downloadSignature signs a link to d's file valid until expires (unix
// seconds), with d's own secret.
func downloadSignature(d analytics.Download, expires int64) string {
	m := hmac.New(sha256.New, []byte(d.Token))
	fmt.Fprintf(m, "%s\n%d", d.ID, expires)
	return hex.EncodeToString(m.Sum(nil))
}

// publicURL is where clients reach this API: Config.PublicURL, else the
// request's own scheme and host.
func (s *server) publicURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// handleDownloadFile: GET /bouncer/v1/messages/download/{download_uuid}/file,
// the signed link (no key): the CSV, streamed part by part.
func (s *server) handleDownloadFile() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.cfg.Downloads
		if st == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "activity downloads are not available on this server"))
			return
		}
		id := r.PathValue("download_uuid")
		gone := errorf(ENotFound, "download_uuid", "download link is invalid or expired: ask GET /v3/messages/download/{download_uuid} for a new one")
		expires, err := strconv.ParseInt(r.URL.Query().Get("expires"), 10, 64)
		if _, perr := uuid.Parse(id); perr != nil || err != nil || s.now().Unix() >= expires {
			writeError(w, s.log, r, gone)
			return
		}
		d, ok, err := st.Download(r.Context(), id)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if !ok || d.Status != analytics.DownloadReady || !s.now().Before(d.Expires) ||
			!hmac.Equal([]byte(downloadSignature(d, expires)), []byte(r.URL.Query().Get("signature"))) {
			writeError(w, s.log, r, gone)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+d.ID+`.csv"`)
		w.Header().Set("Content-Length", strconv.FormatUint(d.Bytes, 10))
		rc := http.NewResponseController(w)
		for part := range d.Parts {
			b, err := st.DownloadPart(r.Context(), id, part)
			if err != nil {
				s.log.Error("activity download: reading a part", "download", id, "part", part, "err", err)
				return // the status is sent; the short body tells the client
			}
			rc.SetWriteDeadline(time.Now().Add(time.Minute)) // a large file outlasts the server's write timeout
			if _, err := io.WriteString(w, b); err != nil {
				return
			}
		}
	})
}
