package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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

func (s *server) groupStore(w http.ResponseWriter, r *http.Request) (GroupStore, bool) {
	return configured(s, w, r, s.cfg.Groups, "unsubscribe groups are")
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

// Unsubscribe groups (SendGrid's /v3/asm/groups) and the group
// unsubscribes across groups (/v3/asm/suppressions).
//
// What bouncer decides where SendGrid does not say:
//   - A group id that the account's unsubscribes use but that was never
//     created (a group_unsubscribe event with SendGrid's asm_group_id, an
//     add to an unknown id) is listed by GET /v3/asm/groups as a group
//     with an empty name and description and its unsubscribe count; GET,
//     PATCH and DELETE /v3/asm/groups/{id} work on it, and a PATCH with a
//     name makes it a group of its own under that same id (how a user
//     coming from SendGrid names the groups its events already use).
//   - DELETE removes the group's unsubscribes (each removal announced on
//     the change log), as SendGrid says: mail of that group reaches those
//     addresses again; the id is never given to a new group. A later
//     group_unsubscribe event with the id adds the address to that id
//     again (an implicit group), where SendGrid would add it to the global
//     unsubscribes.

// GroupStore keeps unsubscribe groups (suppression.Service implements it).
// Every method touches only the given account's groups.
type GroupStore interface {
	Groups(ctx context.Context, account string) ([]suppression.Group, error)
	CreateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) (suppression.Group, error)
	UpdateGroup(ctx context.Context, account string, g suppression.Group, at time.Time) error
	// DeleteGroup removes the group's unsubscribes, then the group.
	DeleteGroup(ctx context.Context, account string, id int64, at time.Time) error
	GroupSuppressions(ctx context.Context, account, emailNorm string, offset, limit uint64) ([]suppression.GroupEntry, error)
	GroupMembers(ctx context.Context, account string, group int64, emailNorms []string) ([]suppression.Entry, error)
}

// SendGrid's limits of a group's name and description (characters).
const (
	maxGroupName        = 30
	maxGroupDescription = 100
)

// groupBody is a group as SendGrid shows it.
type groupBody struct {
	ID           int64   `json:"id"`
	Name         string  `json:"name"`
	Description  string  `json:"description"`
	IsDefault    bool    `json:"is_default"`
	Unsubscribes *uint64 `json:"unsubscribes,omitempty"`
}

func showGroup(g suppression.Group, withCount bool) groupBody {
	b := groupBody{ID: g.ID, Name: g.Name, Description: g.Description, IsDefault: g.IsDefault}
	if withCount {
		n := g.Unsubscribes
		b.Unsubscribes = &n
	}
	return b
}

// pathGroup finds the group named by the request path's {group_id} among
// the account's groups (created or implicit), and returns all of them too
// for the checks that compare a group with the others. An id that is no
// number is EInvalid, one the account has no group for ENotFound.
func pathGroup(r *http.Request, store GroupStore) (suppression.Group, []suppression.Group, error) {
	id, err := groupID(r)
	if err != nil {
		return suppression.Group{}, nil, err
	}
	gs, err := store.Groups(r.Context(), account(r))
	if err != nil {
		return suppression.Group{}, nil, err
	}
	for _, g := range gs {
		if g.ID == id {
			return g, gs, nil
		}
	}
	return suppression.Group{}, nil, errorf(ENotFound, "group_id", "no unsubscribe group %d", id)
}

// groupPatch is a group's fields as a request gives them; nil: not given.
type groupPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	IsDefault   *bool   `json:"is_default"`
}

// checkGroupText validates a name or description: at most max characters,
// no control character; name must not be blank.
func checkGroupText(field, v string, max int, required bool) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case required && v == "":
		return "", errorf(EInvalid, field, "%s must not be empty", field)
	case utf8.RuneCountInString(v) > max:
		return "", errorf(EInvalid, field, "%s is longer than %d characters", field, max)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "", errorf(EInvalid, field, "%s must not hold control characters", field)
	}
	return v, nil
}

// apply validates p onto g; others are the account's other groups (names
// are unique, compared without case).
func (p groupPatch) apply(g suppression.Group, others []suppression.Group) (suppression.Group, error) {
	var err error
	if p.Name != nil {
		if g.Name, err = checkGroupText("name", *p.Name, maxGroupName, true); err != nil {
			return g, err
		}
	}
	if p.Description != nil {
		if g.Description, err = checkGroupText("description", *p.Description, maxGroupDescription, false); err != nil {
			return g, err
		}
	}
	if p.IsDefault != nil {
		g.IsDefault = *p.IsDefault
	}
	if g.Name == "" {
		return g, errorf(EInvalid, "name", "name is required")
	}
	for _, o := range others {
		if o.ID != g.ID && !o.Implicit && strings.EqualFold(o.Name, g.Name) {
			return g, errorf(EInvalid, "name", "a group named %q already exists (group %d): names are unique", o.Name, o.ID)
		}
	}
	return g, nil
}

// handleGroupCreate: POST /v3/asm/groups {"name", "description",
// "is_default"}: 201 with the group.
func (s *server) handleGroupCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		var p groupPatch
		err := decodeBody(r, &p)
		if err == nil && p.Name == nil {
			err = errorf(EInvalid, "name", "name is required")
		}
		if err == nil && p.Description == nil {
			err = errorf(EInvalid, "description", "description is required")
		}
		var all []suppression.Group
		if err == nil {
			all, err = store.Groups(r.Context(), account(r))
		}
		var g suppression.Group
		if err == nil {
			g, err = p.apply(g, all)
		}
		if err == nil {
			created := 0
			for _, o := range all {
				if !o.Implicit {
					created++
				}
			}
			if created >= suppression.MaxGroups {
				err = errorf(EInvalid, "", "an account has at most %d unsubscribe groups: delete one first", suppression.MaxGroups)
			}
		}
		if err == nil {
			g, err = store.CreateGroup(r.Context(), account(r), g, s.now())
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, showGroup(g, false))
	})
}

// handleGroups: GET /v3/asm/groups[?id=N&id=M]: the account's groups,
// created and implicit, by id.
func (s *server) handleGroups() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		want := map[int64]bool{}
		var err error
		for _, raw := range r.URL.Query()["id"] {
			id, perr := strconv.ParseInt(raw, 10, 64)
			if perr != nil || id <= 0 {
				err = errorf(EInvalid, "id", "id must be a positive integer")
				break
			}
			want[id] = true
		}
		var gs []suppression.Group
		if err == nil {
			gs, err = store.Groups(r.Context(), account(r))
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		out := []groupBody{}
		for _, g := range gs {
			if len(want) == 0 || want[g.ID] {
				out = append(out, showGroup(g, true))
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// handleGroupGet: GET /v3/asm/groups/{group_id}.
func (s *server) handleGroupGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		g, _, err := pathGroup(r, store)
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusOK, showGroup(g, true))
	})
}

// handleGroupUpdate: PATCH /v3/asm/groups/{group_id}: 201 with the group
// (SendGrid's status). On an implicit group it creates the group under
// that id, which then needs a name.
func (s *server) handleGroupUpdate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		var p groupPatch
		_, err := groupID(r)
		if err == nil {
			err = decodeBody(r, &p)
		}
		var g suppression.Group
		var gs []suppression.Group
		if err == nil {
			g, gs, err = pathGroup(r, store)
		}
		if err == nil {
			g, err = p.apply(g, gs)
		}
		if err == nil {
			if g.Implicit {
				count := g.Unsubscribes
				g, err = store.CreateGroup(r.Context(), account(r), g, s.now())
				g.Unsubscribes = count
			} else {
				err = store.UpdateGroup(r.Context(), account(r), g, s.now())
			}
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, showGroup(g, true))
	})
}

// handleGroupDeleteGroup: DELETE /v3/asm/groups/{group_id}: 204; the
// group's unsubscribes are removed with it.
func (s *server) handleGroupDeleteGroup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		g, _, err := pathGroup(r, store)
		if err == nil {
			err = store.DeleteGroup(r.Context(), account(r), g.ID, s.now())
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleGroupSearch: POST /v3/asm/groups/{group_id}/suppressions/search
// {"recipient_emails": [...]}: the given addresses that are unsubscribed
// from the group.
func (s *server) handleGroupSearch() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		g, err := groupID(r)
		var body struct {
			RecipientEmails []string `json:"recipient_emails"`
		}
		if err == nil {
			err = decodeBody(r, &body)
		}
		var norms []string
		if err == nil {
			if len(body.RecipientEmails) == 0 {
				err = errorf(EInvalid, "recipient_emails", "recipient_emails is required")
			} else {
				_, norms, err = checkEmails("recipient_emails", body.RecipientEmails, storedEmail)
			}
		}
		var es []suppression.Entry
		if err == nil {
			es, err = store.GroupMembers(r.Context(), account(r), g, norms)
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

// asmSuppression is one group unsubscribe of GET /v3/asm/suppressions.
type asmSuppression struct {
	Email     string `json:"email"`
	GroupID   int64  `json:"group_id"`
	GroupName string `json:"group_name"`
	CreatedAt int64  `json:"created_at"`
}

// handleAsmSuppressions: GET /v3/asm/suppressions: every group unsubscribe
// of the account, newest first; limit (at most and by default 500) and
// offset are bouncer's additions, so an answer stays bounded.
func (s *server) handleAsmSuppressions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		q := r.URL.Query()
		limit, set, err := uintParam(q, "limit", 1, maxListLimit)
		if !set {
			limit = maxListLimit
		}
		var offset uint64
		if err == nil {
			offset, _, err = uintParam(q, "offset", 0, 1<<31-1)
		}
		var es []suppression.GroupEntry
		if err == nil {
			es, err = store.GroupSuppressions(r.Context(), account(r), "", offset, limit)
		}
		var gs []suppression.Group
		if err == nil {
			gs, err = store.Groups(r.Context(), account(r))
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		names := map[int64]string{}
		for _, g := range gs {
			names[g.ID] = g.Name
		}
		out := make([]asmSuppression, len(es))
		for i, e := range es {
			out[i] = asmSuppression{Email: e.Email, GroupID: e.GroupID, GroupName: names[e.GroupID], CreatedAt: e.Created.Unix()}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// groupMembership is one group of GET /v3/asm/suppressions/{email}.
type groupMembership struct {
	Description string `json:"description"`
	ID          int64  `json:"id"`
	IsDefault   bool   `json:"is_default"`
	Name        string `json:"name"`
	Suppressed  bool   `json:"suppressed"`
}

// handleAsmSuppressionGet: GET /v3/asm/suppressions/{email}: every group of
// the account, each saying whether the address is unsubscribed from it.
func (s *server) handleAsmSuppressionGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store, ok := s.groupStore(w, r)
		if !ok {
			return
		}
		_, norm, err := storedEmail("email", r.PathValue("email"))
		var es []suppression.GroupEntry
		if err == nil {
			es, err = store.GroupSuppressions(r.Context(), account(r), norm, 0, suppression.MaxGroups*10)
		}
		var gs []suppression.Group
		if err == nil {
			gs, err = store.Groups(r.Context(), account(r))
		}
		if err != nil {
			writeError(w, s.log, r, err)
			return
		}
		in := map[int64]bool{}
		for _, e := range es {
			in[e.GroupID] = true
		}
		out := make([]groupMembership, len(gs))
		for i, g := range gs {
			out[i] = groupMembership{Description: g.Description, ID: g.ID, IsDefault: g.IsDefault, Name: g.Name, Suppressed: in[g.ID]}
		}
		writeJSON(w, http.StatusOK, map[string][]groupMembership{"suppressions": out})
	})
}
