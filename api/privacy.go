package api

// Privacy erasure of one address, and list import and export over HTTP in
// SendGrid's CSV export format.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/suppression"
)

// PrivacyStore erases addresses and imports and exports lists. Every method
// takes the authenticated account first and touches only its data.
type PrivacyStore interface {
	// Erase removes the normalised address from every table of the
	// account, announces the removal of its list entries on the change log
	// and stores the record, which it returns. Erasing an address that is
	// nowhere succeeds and records zero rows.
	Erase(ctx context.Context, account, emailNorm, requestedBy string) (suppression.Erasure, error)
	// Erasures lists the account's records, newest first.
	Erasures(ctx context.Context, account string, offset, limit uint64) ([]suppression.Erasure, error)
	// ExportList calls fn for every current entry of a list (group 0 but
	// for group unsubscribes), in address order, and stops at fn's error.
	ExportList(ctx context.Context, account, list string, group int64, fn func(csvlist.Row) error) error
	// ImportList adds rows to a list (each entry ordered by its created
	// time) and announces them on the change log: all of them or, on
	// error, possibly a prefix (importing again is harmless).
	ImportList(ctx context.Context, account, list string, group int64, rows []csvlist.Row) error
}

func (s *server) privacy(w http.ResponseWriter, r *http.Request) PrivacyStore {
	if s.cfg.Privacy == nil {
		writeError(w, s.log, r, errorf(ENotFound, "", "erasure, import and export are not enabled on this server"))
	}
	return s.cfg.Privacy
}

type erasureJSON struct {
	ID          string                    `json:"id"`
	EmailSHA256 string                    `json:"email_sha256"`
	RequestedBy string                    `json:"requested_by"`
	ErasedAt    int64                     `json:"erased_at"`
	Tables      []suppression.ErasedTable `json:"tables"`
	RowsRemoved uint64                    `json:"rows_removed"`
	Skipped     []string                  `json:"skipped,omitempty"`
}

func erasureOut(e suppression.Erasure) erasureJSON {
	out := erasureJSON{ID: e.ID, EmailSHA256: e.EmailSHA256, RequestedBy: e.RequestedBy, ErasedAt: e.At.Unix(),
		Tables: e.Tables, Skipped: e.Skipped}
	if out.Tables == nil {
		out.Tables = []suppression.ErasedTable{}
	}
	for _, t := range e.Tables {
		out.RowsRemoved += t.Rows
	}
	return out
}

// handleErase: POST /bouncer/v1/privacy/erasures {"email": "..."}: 201 with
// the record, once every table is clean.
func (s *server) handleErase() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.privacy(w, r)
		if p == nil {
			return
		}
		var body struct {
			Email *string `json:"email"`
		}
		err := decodeBody(r, &body)
		var norm string
		if err == nil && body.Email == nil {
			err = errorf(EInvalid, "email", "email is required")
		}
		if err == nil {
			_, norm, err = storedEmail("email", *body.Email)
		}
		var e suppression.Erasure
		if err == nil {
			e, err = p.Erase(r.Context(), account(r), norm, "key:"+info(r.Context()).keyID)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, erasureOut(e))
	})
}

// handleErasures: GET /bouncer/v1/privacy/erasures?limit&offset.
func (s *server) handleErasures() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.privacy(w, r)
		if p == nil {
			return
		}
		q := r.URL.Query()
		limit, set, err := uintParam(q, "limit", 1, maxListLimit)
		if !set {
			limit = 100
		}
		var offset uint64
		if err == nil {
			offset, _, err = uintParam(q, "offset", 0, 1<<31-1)
		}
		var es []suppression.Erasure
		if err == nil {
			es, err = p.Erasures(r.Context(), account(r), offset, limit)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := make([]erasureJSON, len(es))
		for i, e := range es {
			e.Skipped = nil
			out[i] = erasureOut(e)
		}
		writeJSON(w, http.StatusOK, map[string][]erasureJSON{"result": out})
	})
}

// csvList reads {list} and ?group_id of the import and export routes; a
// group_id also needs groupScope, the scope of the group route that reads
// or changes the same entries.
func csvList(r *http.Request, groupScope string) (list string, group int64, err error) {
	list = r.PathValue("list")
	if list == "global_unsubscribes" {
		list = "unsubscribes"
	}
	if _, ok := csvlist.Columns[list]; !ok {
		return "", 0, errorf(ENotFound, "list", "no such list: want bounces, blocks, invalid_emails, spam_reports or unsubscribes")
	}
	if g, set, err := uintParam(r.URL.Query(), "group_id", 1, 1<<63-1); err != nil {
		return "", 0, err
	} else if set {
		if list != "unsubscribes" {
			return "", 0, errorf(EInvalid, "group_id", "group_id is only for the unsubscribes list")
		}
		if !hasScope(r, groupScope) {
			return "", 0, errorf(EForbidden, "group_id", "group_id needs a key with the scope %s, as the /v3/asm/groups/{group_id}/suppressions route does", groupScope)
		}
		group = int64(g)
	}
	return list, group, nil
}

// importScope is the scope an import into list needs beside
// suppression.create: adding global unsubscribes takes
// asm.suppressions.global.create, as POST /v3/asm/suppressions/global does
// (reading them is suppression.read's, as SendGrid's
// /v3/suppression/unsubscribes is).
func importScope(r *http.Request, list string, group int64) error {
	if list == "unsubscribes" && group == 0 && !hasScope(r, scopeGlobalCreate) {
		return errorf(EForbidden, "list", "importing global unsubscribes needs a key with the scope %s, as POST /v3/asm/suppressions/global does", scopeGlobalCreate)
	}
	return nil
}

// lazyWriter sends the response headers on the first byte written, so an
// error before any row can still be answered with SendGrid's error shape.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
	header  func()
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.header()
	}
	return l.w.Write(p)
}

// handleExport: GET /bouncer/v1/suppressions/{list}/export?group_id&time_format:
// the whole list as SendGrid's CSV export, streamed.
func (s *server) handleExport() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.privacy(w, r)
		if p == nil {
			return
		}
		list, group, err := csvList(r, scopeGroupRead)
		unix := false
		if err == nil {
			switch tf := r.URL.Query().Get("time_format"); tf {
			case "", "datetime":
			case "unix":
				unix = true
			default:
				err = errorf(EInvalid, "time_format", "time_format must be datetime or unix")
			}
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		lw := &lazyWriter{w: w, header: func() {
			h := w.Header()
			h.Set("Content-Type", "text/csv; charset=utf-8")
			h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", list+".csv"))
			w.WriteHeader(http.StatusOK)
		}}
		cw, err := csvlist.NewWriter(lw, list, unix)
		if err == nil {
			err = p.ExportList(r.Context(), account(r), list, group, cw.Write)
		}
		if err == nil {
			err = cw.Flush()
		}
		if err != nil && !lw.started {
			writeError(w, s.log, r, err)
			return
		}
		if err != nil {
			// Half a file is on the wire: break the connection so the client
			// sees a failed download, not a short list.
			s.log.Error("export failed mid-stream", "route", r.Pattern, "err", err)
			panic(http.ErrAbortHandler)
		}
	})
}

// maxImportErrors bounds the bad rows an import answer lists.
const maxImportErrors = 100

// handleImport: POST /bouncer/v1/suppressions/{list}/import?group_id&timezone
// with SendGrid's CSV export as the body. All or nothing: a file with any
// bad row writes nothing and gets 400 listing the bad rows by line.
func (s *server) handleImport() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := s.privacy(w, r)
		if p == nil {
			return
		}
		list, group, err := csvList(r, scopeGroupCreate)
		if err == nil {
			err = importScope(r, list, group)
		}
		loc := time.UTC
		if tz := r.URL.Query().Get("timezone"); err == nil && tz != "" {
			if loc, err = time.LoadLocation(tz); err != nil || strings.ContainsAny(tz, `.\`) {
				err = errorf(EInvalid, "timezone", "timezone must be an IANA zone name such as Europe/Berlin")
			}
		}
		var body []byte
		if err == nil {
			body, err = io.ReadAll(r.Body)
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				err = errorf(ETooLarge, "", "request body is larger than %d bytes: split the file, or use bouncer suppressions import", tooBig.Limit)
			}
		}
		var rows []csvlist.Row
		var bad []errorItem
		if err == nil {
			rows, bad, err = parseImport(body, loc, s.now())
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if len(bad) > 0 {
			writeJSON(w, http.StatusBadRequest, errorBody{Errors: bad})
			return
		}
		if len(rows) > 0 {
			if err := p.ImportList(r.Context(), account(r), list, group, rows); err != nil {
				writeError(w, s.log, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]int{"imported": len(rows)})
	})
}

// parseImport reads a whole CSV file: its rows, or the bad rows as error
// items (field "line N").
func parseImport(body []byte, loc *time.Location, now time.Time) ([]csvlist.Row, []errorItem, error) {
	cr, err := csvlist.NewReader(bytes.NewReader(body), loc, now)
	if err != nil {
		return nil, nil, errorf(EInvalid, "", "%s", err.Error())
	}
	var rows []csvlist.Row
	var bad []errorItem
	nbad := 0
	for {
		row, err := cr.Next()
		if err == io.EOF {
			break
		}
		var re *csvlist.RowError
		if errors.As(err, &re) {
			nbad++
			if len(bad) < maxImportErrors {
				field := fmt.Sprintf("line %d", re.Line)
				bad = append(bad, errorItem{Field: &field, Message: re.Msg})
			}
			continue
		}
		if err != nil {
			return nil, nil, errorf(EInvalid, "", "the body is not readable CSV")
		}
		rows = append(rows, row)
	}
	if nbad > len(bad) {
		bad = append(bad, errorItem{Message: fmt.Sprintf("%d more bad rows not listed", nbad-len(bad))})
	}
	if nbad > 0 {
		bad = append(bad, errorItem{Message: fmt.Sprintf("%d of %d rows are bad: nothing was imported; fix them and send the file again", nbad, nbad+len(rows))})
	}
	return rows, bad, nil
}
