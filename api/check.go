package api

import (
	"math"
	"net/http"

	"github.com/bouncer-mail/bouncer/suppression"
)

// Checker answers "is this address suppressed?" from memory (the API
// process's copy of the suppression index, fed by the change log).
type Checker interface {
	// Lookup lists the lists the normalised address is on.
	Lookup(account, emailNorm string) []suppression.Membership
	// DropReason is SendGrid's dropped reason for a message to the
	// address sent at at (unix seconds) in unsubscribe group group, or "".
	DropReason(account, emailNorm string, group int64, at int64) string
}

// maxCheck bounds one batch check request.
const maxCheck = 1000

type checkResult struct {
	Email      string                   `json:"email"`
	Suppressed bool                     `json:"suppressed"`
	DropReason string                   `json:"drop_reason,omitempty"`
	Lists      []suppression.Membership `json:"lists"`
}

// handleCheck: POST /bouncer/v1/suppressions/check {"emails": [...],
// "group_id": N}: for each address, whether a message to it would be
// dropped and the lists it is on. group_id, and group unsubscribes among
// the lists, need the group read scope too. Answered from memory, no database round
// trip; changes reach it within seconds through the change log.
func (s *server) handleCheck() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.checker == nil {
			writeError(w, s.log, r, errorf(ENotFound, "", "the batch check is not enabled on this server (it needs Kafka: see bouncer api --help)"))
			return
		}
		var body struct {
			Emails  []string `json:"emails"`
			GroupID int64    `json:"group_id"`
		}
		err := decodeBody(r, &body)
		var emails, norms []string
		if err == nil {
			switch {
			case len(body.Emails) == 0:
				err = errorf(EInvalid, "emails", "emails is required")
			case len(body.Emails) > maxCheck:
				err = errorf(EInvalid, "emails", "at most %d emails per request", maxCheck)
			case body.GroupID < 0:
				err = errorf(EInvalid, "group_id", "group_id must not be negative")
			case body.GroupID > 0 && !hasScope(r, scopeGroupRead):
				err = errorf(EForbidden, "group_id", "group_id needs a key with the scope %s, as GET /v3/asm/groups/{group_id}/suppressions does; leave it out to check the other lists", scopeGroupRead)
			default:
				emails, norms, err = checkEmails("emails", body.Emails, storedEmail)
			}
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		acct := account(r)
		groups := hasScope(r, scopeGroupRead)
		out := make([]checkResult, len(emails))
		for i := range emails {
			lists := []suppression.Membership{}
			for _, l := range s.checker.Lookup(acct, norms[i]) {
				// A key that may not read group unsubscribes does not
				// learn them here either.
				if l.Group == 0 || groups {
					lists = append(lists, l)
				}
			}
			// Every entry the list shows counts, also one dated ahead of
			// the clock (within the workers' clock-skew bound), so the check
			// and the list agree.
			reason := s.checker.DropReason(acct, norms[i], body.GroupID, math.MaxUint32)
			out[i] = checkResult{Email: emails[i], Suppressed: reason != "", DropReason: reason, Lists: lists}
		}
		writeJSON(w, http.StatusOK, map[string][]checkResult{"results": out})
	})
}
