package api

import (
	"context"
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/analytics"
)

// Email activity (SendGrid's GET /v3/messages and /v3/messages/{msg_id});
// the query language and the response shapes are package analytics'.

// Activity is what the activity routes read; nil: they answer 404.
type Activity interface {
	// ActivityMessages returns at most limit messages of the account that
	// match f, the most recent last event first.
	ActivityMessages(ctx context.Context, account string, f *analytics.ActivityFilter, limit int) ([]analytics.ActivityMessage, error)
	// ActivityEvents returns the events of one message by time; none when
	// the account has no such message.
	ActivityEvents(ctx context.Context, account, msgID string) ([]analytics.ActivityEvent, error)
}

// Bounds of the activity parameters.
const (
	maxActivityLimit = 1000
	defaultActivityN = 10
	maxMsgID         = 255
)

// activityListEntry is SendGrid's "Abbv. Message".
type activityListEntry struct {
	FromEmail     string `json:"from_email"`
	MsgID         string `json:"msg_id"`
	Subject       string `json:"subject"`
	ToEmail       string `json:"to_email"`
	Status        string `json:"status"`
	OpensCount    uint64 `json:"opens_count"`
	ClicksCount   uint64 `json:"clicks_count"`
	LastEventTime string `json:"last_event_time"`
}

// parseActivityQuery parses the query parameter; a malformed query is
// EInvalid on field "query".
func parseActivityQuery(s string) (*analytics.ActivityFilter, error) {
	f, err := analytics.ParseActivityQuery(s)
	var qe *analytics.QueryError
	if errors.As(err, &qe) {
		return nil, errorf(EInvalid, "query", "%s", qe.Msg)
	}
	return f, err
}

// handleMessages: GET /v3/messages.
func (s *server) handleMessages() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.activity == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "email activity is not available on this server"))
			return
		}
		v := r.URL.Query()
		limit, set, err := uintParam(v, "limit", 1, maxActivityLimit)
		if !set {
			limit = defaultActivityN
		}
		var f *analytics.ActivityFilter
		if err == nil {
			f, err = parseActivityQuery(v.Get("query"))
		}
		var ms []analytics.ActivityMessage
		if err == nil {
			ms, err = s.activity.ActivityMessages(r.Context(), account(r), f, int(limit))
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := make([]activityListEntry, 0, len(ms))
		for _, m := range ms {
			out = append(out, activityListEntry{
				FromEmail: m.FromEmail, MsgID: m.MsgID, Subject: m.Subject, ToEmail: m.ToEmail, Status: m.Status,
				OpensCount: m.Opens, ClicksCount: m.Clicks, LastEventTime: analytics.ActivityTime(m.LastEventTime),
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{"messages": out})
	})
}

// handleMessage: GET /v3/messages/{msg_id}.
func (s *server) handleMessage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.activity == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "email activity is not available on this server"))
			return
		}
		id := r.PathValue("msg_id")
		if id == "" || len(id) > maxMsgID || !utf8.ValidString(id) {
			writeError(w, s.log, r, errorf(EInvalid, "msg_id", "msg_id must be a message id of at most %d bytes", maxMsgID))
			return
		}
		evs, err := s.activity.ActivityEvents(r.Context(), account(r), id)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		if len(evs) == 0 {
			writeError(w, s.log, r, errorf(ENotFound, "message_id", "not found"))
			return
		}
		writeJSON(w, http.StatusOK, analytics.BuildActivityMessage(id, evs))
	})
}
