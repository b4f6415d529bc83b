package suppression

import (
	"sync"
)

// entry is one list membership of an address.
type entry struct {
	list    string
	group   int64
	version uint64
	deleted bool
	// why is the reason code (user_unknown, ...) when known: short, from a
	// closed set, unlike the SMTP text.
	why string
}

// Index maps account and normalised address to list memberships.
type Index struct {
	mu sync.RWMutex
	// m[account + "\x00" + email] holds the memberships of that address,
	// removals included (they carry the version that later changes must
	// beat).
	m      map[string][]entry
	active int
}

// New returns an empty index.
func New() *Index { return &Index{m: map[string][]entry{}} }

func key(account, email string) string { return account + "\x00" + email }

// Apply records one change if it is newer than what the index holds for
// its (list, group).
func (ix *Index) Apply(c Change) {
	v := c.Version()
	k := key(c.AccountID, c.EmailNorm)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	es := ix.m[k]
	for i := range es {
		e := &es[i]
		if e.list != c.List || e.group != c.GroupID {
			continue
		}
		if v <= e.version {
			return
		}
		if e.deleted != c.Deleted {
			if c.Deleted {
				ix.active--
			} else {
				ix.active++
			}
		}
		*e = entry{list: c.List, group: c.GroupID, version: v, deleted: c.Deleted, why: c.ReasonCode}
		return
	}
	ix.m[k] = append(es, entry{list: c.List, group: c.GroupID, version: v, deleted: c.Deleted, why: c.ReasonCode})
	if !c.Deleted {
		ix.active++
	}
}

// Membership is one list an address is on.
type Membership struct {
	List  string `json:"list"`
	Group int64  `json:"group_id,omitempty"`
	// ReasonCode is the classifier's reason of the bounce that put the
	// address on the list, when there was one.
	ReasonCode string `json:"reason_code,omitempty"`
}

// Lookup returns the lists (and unsubscribe groups) the address is on.
func (ix *Index) Lookup(account, emailNorm string) []Membership {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []Membership
	for _, e := range ix.m[key(account, emailNorm)] {
		if !e.deleted {
			out = append(out, Membership{List: e.list, Group: e.group, ReasonCode: e.why})
		}
	}
	return out
}

// Len is the number of active memberships.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.active
}

// DropReason returns SendGrid's dropped reason for sending to an address,
// or "" when it may be sent to: bounces, spam reports, global unsubscribes
// (or a group unsubscribe of the message's group) and invalid addresses
// drop a message; blocks do not.
//
// Only memberships that began at or before at (unix seconds, the event
// time of the message) count, so a message is never dropped for a bounce
// that came after it, and re-handling a batch decides the same way.
func (ix *Index) DropReason(account, emailNorm string, group int64, at int64) string {
	limit := uint64(max(at, 0))*2 + 1
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	best := ""
	rank := 99
	for _, e := range ix.m[key(account, emailNorm)] {
		if e.deleted || e.version > limit {
			continue
		}
		r, reason := 99, ""
		switch {
		case e.list == ListBounces:
			r, reason = 0, "Bounced Address"
		case e.list == ListSpamReports:
			r, reason = 1, "Spam Reporting Address"
		case e.list == ListUnsubscribes && (e.group == 0 || e.group == group):
			r, reason = 2, "Unsubscribed Address"
		case e.list == ListInvalidEmails:
			r, reason = 3, "Invalid"
		}
		if r < rank {
			rank, best = r, reason
		}
	}
	return best
}
