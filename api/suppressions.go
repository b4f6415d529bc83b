package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// maxListLimit is SendGrid's page size limit; also the default.
const maxListLimit = 500

// maxEmailLen bounds an address (RFC 5321: 254 in practice; room to spare).
const maxEmailLen = 320

// normEmail is how addresses are compared: ASCII white space trimmed, ASCII
// letters lower-cased and nothing else (as the pipeline's EmailNorm).
func normEmail(s string) string { return schemas.LowerASCII(strings.Trim(s, " \t\n\v\f\r")) }

// checkEmail validates an address the caller adds to a list (see
// csvlist.NormalizeAddress: the same rules as the CSV import).
func checkEmail(field, raw string) (email, norm string, err error) {
	norm, ok := csvlist.NormalizeAddress(raw)
	if !ok {
		return "", "", errorf(EInvalid, field, "%s is not a valid email address", field)
	}
	return csvlist.TrimSpace(raw), norm, nil
}

// storedEmail reads an address that names what may already be stored (to
// look up, delete, check or erase): anything the pipeline accepts as an
// address (schemas.NormalizeAddress), so every stored entry can be named,
// however odd (x<script>@evil.example, a//b@x.example); adding keeps
// checkEmail's stricter rules.
func storedEmail(field, raw string) (email, norm string, err error) {
	norm, ok := schemas.NormalizeAddress(raw)
	if !ok {
		return "", "", errorf(EInvalid, field, "%s is not an email address (want local@domain, valid UTF-8, no space or control character)", field)
	}
	return csvlist.TrimSpace(raw), norm, nil
}

// likeEscape escapes LIKE's metacharacters so s matches only itself.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// emailFilter turns SendGrid's email parameter into a LIKE pattern: a
// prefix of the address, where % is a wildcard.
func emailFilter(s string) (string, error) {
	valid := utf8.ValidString(s) // before lower-casing, which turns bad bytes into U+FFFD
	s = normEmail(s)
	if !valid || len(s) > maxEmailLen || strings.ContainsRune(s, utf8.RuneError) || strings.ContainsFunc(s, unicode.IsControl) {
		return "", errorf(EInvalid, "email", "email is not a valid filter")
	}
	return strings.NewReplacer(`\`, `\\`, `_`, `\_`).Replace(s) + "%", nil
}

// uintParam parses an optional integer query parameter in [min, max].
func uintParam(q url.Values, name string, min, max uint64) (v uint64, set bool, err error) {
	raw := q.Get(name)
	if raw == "" {
		return 0, false, nil
	}
	v, perr := strconv.ParseUint(raw, 10, 64)
	if perr != nil || v < min || v > max {
		return 0, false, errorf(EInvalid, name, "%s must be an integer from %d to %d", name, min, max)
	}
	return v, true, nil
}

// listEntry is one element of a list response; which fields a list shows
// follows SendGrid's response schema of that list.
type listEntry struct {
	Created int64   `json:"created"`
	Email   string  `json:"email"`
	Reason  *string `json:"reason,omitempty"`
	Status  *string `json:"status,omitempty"`
	IP      *string `json:"ip,omitempty"`
}

func entry(list string, e suppression.Entry) listEntry {
	out := listEntry{Created: e.Created.Unix(), Email: e.Email}
	switch list {
	case "bounces", "blocks":
		out.Reason, out.Status = &e.Reason, &e.Status
	case "invalid_emails":
		out.Reason = &e.Reason
	case "spam_reports":
		ip := "" // the sending IP is not kept on the list
		out.IP = &ip
	}
	return out
}

func entries(list string, es []suppression.Entry) []listEntry {
	out := make([]listEntry, 0, len(es))
	for _, e := range es {
		out = append(out, entry(list, e))
	}
	return out
}

// handleList: GET /v3/suppression/{list}?start_time&end_time&limit&offset&email.
func (s *server) handleList(list string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseListQuery(list, r.URL.Query())
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		es, err := s.store.Suppressions(r.Context(), account(r), q)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, entries(list, es))
	})
}

func parseListQuery(list string, v url.Values) (suppression.Query, error) {
	q := suppression.Query{List: list, Limit: maxListLimit}
	from, _, err := uintParam(v, "start_time", 0, 1<<32-1)
	if err != nil {
		return q, err
	}
	to, toSet, err := uintParam(v, "end_time", 0, 1<<32-1)
	if err != nil {
		return q, err
	}
	if toSet && to < from {
		return q, errorf(EInvalid, "end_time", "end_time must not be before start_time")
	}
	if toSet && to == 0 {
		to = 1 // 0 means no bound to the store; nothing is created at 0 anyway
	}
	limit, limitSet, err := uintParam(v, "limit", 1, maxListLimit)
	if err != nil {
		return q, err
	}
	if limitSet {
		q.Limit = limit
	}
	offset, _, err := uintParam(v, "offset", 0, 1<<31-1)
	if err != nil {
		return q, err
	}
	q.From, q.To, q.Offset = uint32(from), uint32(to), offset
	if e := v.Get("email"); e != "" {
		if q.EmailLike, err = emailFilter(e); err != nil {
			return q, err
		}
	}
	return q, nil
}

// lookup returns the current entry of one address of a list, if any.
func (s *server) lookup(r *http.Request, list string) ([]suppression.Entry, error) {
	_, norm, err := storedEmail("email", r.PathValue("email"))
	if err != nil {
		return nil, err
	}
	return s.store.Suppressions(r.Context(), account(r), suppression.Query{List: list, EmailLike: likeEscape(norm), Limit: 1})
}

// handleGet: GET /v3/suppression/{list}/{email}: an array of zero or one entry.
func (s *server) handleGet(list string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		es, err := s.lookup(r, list)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, entries(list, es))
	})
}

// remove writes a removal of each address from a list (group 0 but for
// group unsubscribes), stamped now, or at the entry's created time when
// that is later: an entry dated ahead of the server's clock (within the
// workers' clock-skew bound, or stored before there was one) would
// otherwise outlive the delete, which must always take effect.
func (s *server) remove(r *http.Request, list string, group int64, emails, norms []string) error {
	now := s.now()
	ahead, err := s.entriesAhead(r, list, group, norms, now)
	if err != nil {
		return err
	}
	changes := make([]suppression.Change, len(emails))
	for i := range emails {
		at := now
		if c, ok := ahead[norms[i]]; ok && c.After(at) {
			at = c
		}
		changes[i] = suppression.Change{List: list, GroupID: group, Email: emails[i], EmailNorm: norms[i], At: at, Deleted: true, Source: "api"}
	}
	return s.store.WriteSuppressions(r.Context(), account(r), changes)
}

// entriesAhead returns the created time of the current entries among norms
// that are dated after now. One address is looked up; for several, the
// list's entries dated after now are paged through (there are few: the
// workers dead-letter events dated beyond their clock-skew bound).
func (s *server) entriesAhead(r *http.Request, list string, group int64, norms []string, now time.Time) (map[string]time.Time, error) {
	from := uint32(min(max(now.Unix()+1, 1), 1<<32-1))
	q := suppression.Query{List: list, GroupID: group, From: from, Limit: maxListLimit}
	want := map[string]bool{}
	for _, n := range norms {
		want[n] = true
	}
	if len(norms) == 1 {
		q.EmailLike, q.Limit = likeEscape(norms[0]), 1
	}
	out := map[string]time.Time{}
	for {
		es, err := s.store.Suppressions(r.Context(), account(r), q)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if n, ok := schemas.NormalizeAddress(e.Email); ok && want[n] {
				out[n] = e.Created
			} else if len(norms) == 1 {
				out[norms[0]] = e.Created // matched by email_norm: an entry stored with an older form
			}
		}
		if uint64(len(es)) < q.Limit || len(norms) == 1 {
			return out, nil
		}
		q.Offset += q.Limit
	}
}

// handleDelete: DELETE /v3/suppression/{list}/{email}: 204, also when the
// address was not on the list (the removal still orders later events).
func (s *server) handleDelete(list string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email, norm, err := storedEmail("email", r.PathValue("email"))
		if err == nil {
			err = s.remove(r, list, 0, []string{email}, []string{norm})
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// maxBulkEmails bounds the emails of one bulk request.
const maxBulkEmails = 1000

// handleBulkDelete: DELETE /v3/suppression/{list} with {"delete_all": true}
// or {"emails": [...]}, not both.
func (s *server) handleBulkDelete(list string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			DeleteAll bool     `json:"delete_all"`
			Emails    []string `json:"emails"`
		}
		err := decodeBody(r, &body)
		switch {
		case err != nil:
		case body.DeleteAll && len(body.Emails) > 0:
			err = errorf(EInvalid, "delete_all", "delete_all and emails cannot both be set")
		case body.DeleteAll:
			err = s.store.DeleteAllSuppressions(r.Context(), account(r), list, 0, s.now())
		case len(body.Emails) == 0:
			err = errorf(EInvalid, "emails", "set delete_all to true or give emails")
		default:
			var emails, norms []string
			emails, norms, err = checkEmails("emails", body.Emails, storedEmail)
			if err == nil {
				err = s.remove(r, list, 0, emails, norms)
			}
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// checkEmails reads a request's addresses with check (checkEmail to add,
// storedEmail to name stored ones).
func checkEmails(field string, raw []string, check func(field, raw string) (string, string, error)) (emails, norms []string, err error) {
	if len(raw) > maxBulkEmails {
		return nil, nil, errorf(EInvalid, field, "at most %d %s per request", maxBulkEmails, field)
	}
	for _, e := range raw {
		email, norm, err := check(field, e)
		if err != nil {
			return nil, nil, err
		}
		emails, norms = append(emails, email), append(norms, norm)
	}
	return emails, norms, nil
}

// decodeBody reads one JSON value into v. A body that is not valid UTF-8
// is refused (encoding/json would silently turn bad bytes into U+FFFD, and
// an address with U+FFFD is a different, real one).
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errorf(ETooLarge, "", "request body is larger than %d bytes", tooBig.Limit)
	case err != nil:
		return errorf(EInvalid, "", "request body could not be read")
	case !utf8.Valid(body):
		return errorf(EInvalid, "", "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	err = dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data")
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return errorf(EInvalid, "", "request body is empty: want JSON")
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return errorf(EInvalid, typeErr.Field, "%s has the wrong type", typeErr.Field)
	}
	return errorf(EInvalid, "", "request body is not valid JSON")
}

// handleGlobalAdd: POST /v3/asm/suppressions/global {"recipient_emails": [...]}: 201.
func (s *server) handleGlobalAdd() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			RecipientEmails []string `json:"recipient_emails"`
		}
		err := decodeBody(r, &body)
		var emails, norms []string
		if err == nil {
			if len(body.RecipientEmails) == 0 {
				err = errorf(EInvalid, "recipient_emails", "recipient_emails is required")
			} else {
				emails, norms, err = checkEmails("recipient_emails", body.RecipientEmails, checkEmail)
			}
		}
		if err == nil {
			now := s.now()
			changes := make([]suppression.Change, len(emails))
			for i := range emails {
				changes[i] = suppression.Change{List: "unsubscribes", Email: emails[i], EmailNorm: norms[i], At: now, Source: "api"}
			}
			err = s.store.WriteSuppressions(r.Context(), account(r), changes)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string][]string{"recipient_emails": emails})
	})
}

// handleGlobalGet: GET /v3/asm/suppressions/global/{email}:
// {"recipient_email": ...}, or {} when the address is not suppressed.
func (s *server) handleGlobalGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		es, err := s.lookup(r, "unsubscribes")
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := map[string]string{}
		if len(es) > 0 {
			out["recipient_email"] = es[0].Email
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleGlobalDelete: DELETE /v3/asm/suppressions/global/{email}: 204.
func (s *server) handleGlobalDelete() http.Handler { return s.handleDelete("unsubscribes") }

// classifications are SendGrid's seven bounce classifications.
var classifications = []string{"Content", "Frequency or Volume Too High", "Invalid Address",
	"Mailbox Unavailable", "Reputation", "Technical Failure", "Unclassified"}

// dateRange parses start_date and end_date (YYYY-MM-DD, inclusive) into
// [from, to); absent means unbounded.
func dateRange(v url.Values, now time.Time) (from, to time.Time, err error) {
	from, to = time.Unix(0, 0).UTC(), now.UTC().AddDate(0, 0, 2)
	for _, p := range []struct {
		name string
		dst  *time.Time
		add  int
	}{{"start_date", &from, 0}, {"end_date", &to, 1}} {
		raw := v.Get(p.name)
		if raw == "" {
			continue
		}
		d, perr := time.Parse(time.DateOnly, raw)
		if perr != nil {
			return from, to, errorf(EInvalid, p.name, "%s must be a date as YYYY-MM-DD", p.name)
		}
		*p.dst = d.AddDate(0, 0, p.add)
	}
	if !to.After(from) {
		return from, to, errorf(EInvalid, "end_date", "end_date must not be before start_date")
	}
	return from, to, nil
}

type dayStats[T any] struct {
	Date  string `json:"date"`
	Stats []T    `json:"stats"`
}

type classCount struct {
	Classification string `json:"classification"`
	Count          uint64 `json:"count"`
}

type domainCount struct {
	Domain string `json:"domain"`
	Count  uint64 `json:"count"`
}

// byDay groups counts (sorted by day) into SendGrid's {"result": [...]}.
func byDay[T any](cs []analytics.DayCount, item func(analytics.DayCount) T) map[string][]dayStats[T] {
	out := []dayStats[T]{}
	for _, c := range cs {
		if len(out) == 0 || out[len(out)-1].Date != c.Day {
			out = append(out, dayStats[T]{Date: c.Day, Stats: []T{}})
		}
		last := &out[len(out)-1]
		last.Stats = append(last.Stats, item(c))
	}
	return map[string][]dayStats[T]{"result": out}
}

// handleClassifications: GET /v3/suppression/bounces/classifications.
func (s *server) handleClassifications() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, to, err := dateRange(r.URL.Query(), s.now())
		var cs []analytics.DayCount
		if err == nil {
			cs, err = s.store.BounceClassifications(r.Context(), account(r), from, to)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, byDay(cs, func(c analytics.DayCount) classCount { return classCount{c.Key, c.N} }))
	})
}

// handleClassificationDomains: GET /v3/suppression/bounces/classifications/{classification}.
func (s *server) handleClassificationDomains() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := r.PathValue("classification")
		var err error
		if !slices.Contains(classifications, class) {
			err = errorf(EInvalid, "classification", "classification must be one of: %s", strings.Join(classifications, ", "))
		}
		var from, to time.Time
		if err == nil {
			from, to, err = dateRange(r.URL.Query(), s.now())
		}
		var cs []analytics.DayCount
		if err == nil {
			cs, err = s.store.BounceClassificationDomains(r.Context(), account(r), class, from, to)
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, byDay(cs, func(c analytics.DayCount) domainCount { return domainCount{c.Key, c.N} }))
	})
}

func (s *server) handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}
