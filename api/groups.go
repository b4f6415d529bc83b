package api

import (
	"net/http"
	"strconv"

	"github.com/bouncer-mail/bouncer/suppression"
)

// groupID reads the {group_id} path value: a positive integer.
func groupID(r *http.Request) (int64, error) {
	g, err := strconv.ParseInt(r.PathValue("group_id"), 10, 64)
	if err != nil || g <= 0 {
		return 0, errorf(EInvalid, "group_id", "group_id must be a positive integer")
	}
	return g, nil
}

// handleGroupList: GET /v3/asm/groups/{group_id}/suppressions: the
// addresses unsubscribed from the group, as an array of strings.
func (s *server) handleGroupList() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := groupID(r)
		var es []suppression.Entry
		if err == nil {
			es, err = s.store.Suppressions(r.Context(), account(r), suppression.Query{List: "unsubscribes", GroupID: g, Limit: maxListLimit})
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := make([]string, len(es))
		for i, e := range es {
			out[i] = e.Email
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleGroupAdd: POST /v3/asm/groups/{group_id}/suppressions
// {"recipient_emails": [...]}: 201 with the addresses added.
func (s *server) handleGroupAdd() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := groupID(r)
		var body struct {
			RecipientEmails []string `json:"recipient_emails"`
		}
		if err == nil {
			err = decodeBody(r, &body)
		}
		var emails, norms []string
		if err == nil {
			switch {
			case len(body.RecipientEmails) == 0:
				err = errorf(EInvalid, "recipient_emails", "recipient_emails is required")
			case len(body.RecipientEmails) > maxBulkEmails:
				err = errorf(EInvalid, "recipient_emails", "at most %d recipient_emails per request", maxBulkEmails)
			default:
				emails, norms, err = checkEmails("recipient_emails", body.RecipientEmails, checkEmail)
			}
		}
		if err == nil {
			now := s.now()
			changes := make([]suppression.Change, len(emails))
			for i := range emails {
				changes[i] = suppression.Change{List: "unsubscribes", GroupID: g, Email: emails[i], EmailNorm: norms[i], At: now, Source: "api"}
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

// handleGroupDelete: DELETE /v3/asm/groups/{group_id}/suppressions/{email}: 204.
func (s *server) handleGroupDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, err := groupID(r)
		var email, norm string
		if err == nil {
			email, norm, err = storedEmail("email", r.PathValue("email"))
		}
		if err == nil {
			err = s.remove(r, "unsubscribes", g, []string{email}, []string{norm})
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
