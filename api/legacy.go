package api

// SendGrid's legacy v2 Web API for the bounce list: /api/bounces.get.json,
// /api/bounces.count.json and /api/bounces.delete.json, by GET or POST
// (parameters in the query or a form body), for integrations written
// before v3 (SendGrid deprecated v2 in 2025). They read and change the same
// bounces list as /v3/suppression/bounces, with the same keys, scopes,
// rate limits and accounts.
//
//   - Authentication: "Authorization: Bearer <key>", or the parameters
//     api_user=apikey and api_key=<key> (v2's way of passing an API key;
//     any other api_user, a SendGrid username and password, is refused).
//   - Answers have v2's shapes: the list as an array of {"email", "status",
//     "reason"} (plus "created", "YYYY-MM-DD HH:MM:SS" in UTC, with date=1),
//     {"count": n}, {"message": "success"}, and errors as {"message":
//     "error", "errors": ["..."]} with the status v3 would answer.
//   - type=soft selects entries whose status is 4.x.x, type=hard the
//     others. bouncer's pipeline lists only hard bounces, so soft ones are
//     only those imported from a SendGrid export: type=soft usually answers
//     an empty list, a count of 0 and deletes nothing.
//   - bounces.delete.json without email, dates or type deletes the whole
//     list, as v2 did (each removal announced on the change log, as
//     DELETE /v3/suppression/bounces with delete_all). With an email it
//     removes that address (also when it is not listed, as v3's delete);
//     with dates or a type, the matching entries.
//   - days=N selects the last N days, today (UTC) included; start_date
//     and end_date (YYYY-MM-DD, inclusive, UTC) a range; not both.
//   - The list is streamed in pages of 500 from the store: without limit,
//     the whole list.

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/suppression"
)

// legacyPrefix is where the v2 Web API's paths live.
const legacyPrefix = "/api/"

// legacyError is v2's error shape.
type legacyError struct {
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
}

// legacyParams reads a v2 request's parameters: the query, and for a POST
// with a form body, the form (limited to Config.MaxBodyBytes).
func (s *server) legacyParams(r *http.Request) (url.Values, error) {
	ri := info(r.Context())
	if ri.legacyForm != nil {
		return ri.legacyForm, nil
	}
	v := r.URL.Query()
	if r.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
			r.Body = http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes)
			var err error
			if mt == "multipart/form-data" {
				err = r.ParseMultipartForm(s.cfg.MaxBodyBytes)
			} else {
				err = r.ParseForm()
			}
			if err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					return nil, errorf(ETooLarge, "", "request body is larger than %d bytes", tooBig.Limit)
				}
				return nil, errorf(EInvalid, "", "the form body could not be read: %v", err)
			}
			for k, vs := range r.PostForm {
				v[k] = append(v[k], vs...)
			}
		}
	}
	ri.legacyForm = v
	return v, nil
}

// legacyKey authenticates a v2 request by its api_user and api_key
// parameters.
func (s *server) legacyKey(r *http.Request) (accounts.Key, error) {
	v, err := s.legacyParams(r)
	if err != nil {
		return accounts.Key{}, err
	}
	user, key := v.Get("api_user"), v.Get("api_key")
	switch {
	case key == "":
		return accounts.Key{}, errorf(EUnauthorized, "", "authorization required: pass api_user=apikey&api_key=<key>, or Authorization: Bearer <key>")
	case user != "apikey":
		return accounts.Key{}, errorf(EUnauthorized, "", "Bad username / password: bouncer takes API keys only, as api_user=apikey&api_key=<key>")
	}
	return s.checkKey(r, key)
}

// legacyQuery is what a v2 bounces call selects.
type legacyQuery struct {
	q suppression.Query
	// email, when set, is the one address asked for (normalised form).
	email, emailRaw string
	// filtered: dates or a type were given.
	filtered bool
	date     bool
	limit    uint64 // 0: no limit
}

func parseLegacyQuery(v url.Values, now time.Time) (legacyQuery, error) {
	lq := legacyQuery{q: suppression.Query{List: suppression.ListBounces}}
	switch v.Get("date") {
	case "", "0":
	case "1":
		lq.date = true
	default:
		return lq, errorf(EInvalid, "date", "date must be 1 (or left out)")
	}
	switch t := strings.ToLower(v.Get("type")); t {
	case "":
	case "hard", "soft":
		lq.q.Bounce, lq.filtered = t, true
	default:
		return lq, errorf(EInvalid, "type", "type must be hard or soft")
	}
	days, daysSet, err := uintParam(v, "days", 1, 36500)
	if err != nil {
		return lq, err
	}
	start, end := v.Get("start_date"), v.Get("end_date")
	if daysSet && (start != "" || end != "") {
		return lq, errorf(EInvalid, "days", "give days or start_date and end_date, not both")
	}
	today := now.UTC().Truncate(24 * time.Hour)
	if daysSet {
		lq.q.From = unixBound(today.AddDate(0, 0, -int(days-1)))
		lq.filtered = true
	}
	for _, p := range []struct {
		name, raw string
		dst       *uint32
		add       int
	}{{"start_date", start, &lq.q.From, 0}, {"end_date", end, &lq.q.To, 1}} {
		if p.raw == "" {
			continue
		}
		d, err := time.Parse(time.DateOnly, p.raw)
		if err != nil {
			return lq, errorf(EInvalid, p.name, "%s must be a date as YYYY-MM-DD", p.name)
		}
		*p.dst = unixBound(d.AddDate(0, 0, p.add))
		if p.add == 1 {
			*p.dst-- // inclusive: up to the last second of the day
		}
		lq.filtered = true
	}
	if lq.q.To != 0 && lq.q.To < lq.q.From {
		return lq, errorf(EInvalid, "end_date", "end_date must not be before start_date")
	}
	if limit, set, err := uintParam(v, "limit", 1, 1<<31-1); err != nil {
		return lq, err
	} else if set {
		lq.limit = limit
	}
	if lq.q.Offset, _, err = uintParam(v, "offset", 0, 1<<31-1); err != nil {
		return lq, err
	}
	if e := v.Get("email"); e != "" {
		raw, norm, err := storedEmail("email", e)
		if err != nil {
			return lq, err
		}
		lq.email, lq.emailRaw, lq.q.EmailLike = norm, raw, likeEscape(norm)
	}
	return lq, nil
}

// unixBound is t in unix seconds, within what the store's bounds hold (1
// to 2^32-1; 0 means no bound).
func unixBound(t time.Time) uint32 { return uint32(min(max(t.Unix(), 1), 1<<32-1)) }

// legacyBounce is one entry of bounces.get.json.
type legacyBounce struct {
	Status  string `json:"status"`
	Created string `json:"created,omitempty"`
	Reason  string `json:"reason"`
	Email   string `json:"email"`
}

// legacyHandler wraps a v2 handler: it reads the parameters first (so a
// bad form body is answered before anything else).
func (s *server) legacyHandler(fn func(w http.ResponseWriter, r *http.Request, lq legacyQuery) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.legacyParams(r)
		var lq legacyQuery
		if err == nil {
			lq, err = parseLegacyQuery(v, s.now())
		}
		if err == nil {
			err = fn(w, r, lq)
		}
		if err != nil {
			writeError(w, s.log, r, err)
		}
	})
}

// handleLegacyGet: /api/bounces.get.json. The answer is written as its
// pages arrive from the store; a store failure after the first page cuts
// the connection (the client sees an incomplete body, never a short list).
func (s *server) handleLegacyGet() http.Handler {
	return s.legacyHandler(func(w http.ResponseWriter, r *http.Request, lq legacyQuery) error {
		q := lq.q
		left := lq.limit
		first := true
		for {
			q.Limit = maxListLimit
			if lq.limit > 0 {
				q.Limit = min(q.Limit, left)
			}
			es, err := s.store.Suppressions(r.Context(), account(r), q)
			if err != nil {
				if first {
					return err
				}
				s.log.Error("bounces.get.json: a page failed after the answer began", "err", err)
				panic(http.ErrAbortHandler)
			}
			if uint64(len(es)) > q.Limit {
				es = es[:q.Limit]
			}
			if first {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				w.Write([]byte("["))
			}
			for i, e := range es {
				if !first || i > 0 {
					w.Write([]byte(","))
				}
				b := legacyBounce{Status: e.Status, Reason: e.Reason, Email: e.Email}
				if lq.date {
					b.Created = e.Created.UTC().Format(time.DateTime)
				}
				item, _ := json.Marshal(b) // strings only: cannot fail
				w.Write(item)
			}
			first = false
			if lq.limit > 0 {
				left -= uint64(len(es))
			}
			if uint64(len(es)) < q.Limit || (lq.limit > 0 && left == 0) {
				break
			}
			q.Offset += uint64(len(es))
		}
		w.Write([]byte("]\n"))
		return nil
	})
}

// handleLegacyCount: /api/bounces.count.json: {"count": n}.
func (s *server) handleLegacyCount() http.Handler {
	return s.legacyHandler(func(w http.ResponseWriter, r *http.Request, lq legacyQuery) error {
		n, err := s.store.CountSuppressions(r.Context(), account(r), lq.q)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"count": n})
		return nil
	})
}

// legacyDeleteRounds bounds the pages one bounces.delete.json removes by
// dates or type (500 each): a list that does not shrink (a store that
// does not take the removals) ends in an error, not a loop.
const legacyDeleteRounds = 100_000

// handleLegacyDelete: /api/bounces.delete.json: {"message": "success"}.
func (s *server) handleLegacyDelete() http.Handler {
	return s.legacyHandler(func(w http.ResponseWriter, r *http.Request, lq legacyQuery) error {
		var err error
		switch {
		case lq.email != "" && !lq.filtered:
			err = s.remove(r, suppression.ListBounces, 0, []string{lq.emailRaw}, []string{lq.email})
		case lq.email == "" && !lq.filtered:
			// v2: no parameters delete the whole list.
			err = s.store.DeleteAllSuppressions(r.Context(), account(r), suppression.ListBounces, 0, s.now())
		default:
			err = s.legacyDeleteMatching(r, lq.q)
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"message": "success"})
		return nil
	})
}

// legacyDeleteMatching removes the entries q selects, a page at a time,
// until none is left.
func (s *server) legacyDeleteMatching(r *http.Request, q suppression.Query) error {
	q.Offset, q.Limit = 0, maxListLimit
	removed := map[string]bool{}
	for range legacyDeleteRounds {
		es, err := s.store.Suppressions(r.Context(), account(r), q)
		if err != nil || len(es) == 0 {
			return err
		}
		emails, norms := make([]string, len(es)), make([]string, len(es))
		for i, e := range es {
			if removed[e.EmailNorm] {
				return errors.New("bounces.delete.json: an entry is still listed after its removal")
			}
			removed[e.EmailNorm] = true
			emails[i], norms[i] = e.Email, e.EmailNorm
		}
		if err := s.remove(r, suppression.ListBounces, 0, emails, norms); err != nil {
			return err
		}
	}
	return errors.New("bounces.delete.json: too many entries for one call")
}
