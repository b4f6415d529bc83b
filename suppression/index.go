package suppression

import (
	"slices"
	"sync"
)

// Position is where the event that caused a change sits in the event
// stream: its Kafka coordinates and its element's index in the message.
// The zero Position (Topic "") is a change made elsewhere (the API, an
// import, an erasure).
type Position struct {
	Topic     string
	Partition int
	Offset    int64
	Index     int
}

// IsZero reports whether p names no event.
func (p Position) IsZero() bool { return p.Topic == "" }

// pos is a Position as the index keeps it: the topic interned.
type pos struct {
	topic     uint32 // 0: no event (Position.IsZero)
	partition int32
	offset    int64
	index     int32
}

// after reports whether p is a change of an event at or after q's in q's
// partition: a decision for the event at q must not see it.
func (p pos) atOrAfter(q pos) bool {
	if p.topic == 0 || p.topic != q.topic || p.partition != q.partition {
		return false
	}
	return p.offset > q.offset || p.offset == q.offset && p.index >= q.index
}

func (p pos) less(q pos) bool {
	if p.topic != q.topic {
		return p.topic < q.topic
	}
	if p.partition != q.partition {
		return p.partition < q.partition
	}
	if p.offset != q.offset {
		return p.offset < q.offset
	}
	return p.index < q.index
}

// entry is one change of one list membership of an address.
type entry struct {
	list    string
	group   int64
	version uint64
	deleted bool
	// why is the reason code (user_unknown, ...) when known: short, from a
	// closed set, unlike the SMTP text.
	why string
	src pos
}

// keptChanges is how many changes of one (address, list, group) the index
// keeps: the newest decides Lookup; the older ones answer DropReasonAt for
// an event that comes before the newer ones' events in its partition (a
// replayed batch, or the webhook group reading behind the sink).
const keptChanges = 4

// Index maps account and normalised address to list memberships.
type Index struct {
	mu sync.RWMutex
	// m[account + "\x00" + email] holds the changes of that address's
	// memberships, removals included (they carry the version that later
	// changes must beat): per (list, group) newest first (version, then
	// position), at most keptChanges.
	m      map[string][]entry
	active int
	topics map[string]uint32
}

// New returns an empty index.
func New() *Index { return &Index{m: map[string][]entry{}, topics: map[string]uint32{}} }

func key(account, email string) string { return account + "\x00" + email }

// posOf interns p's topic; ix.mu must be held for writing when add.
func (ix *Index) posOf(p Position, add bool) pos {
	if p.Topic == "" {
		return pos{}
	}
	id, ok := ix.topics[p.Topic]
	if !ok {
		if !add {
			return pos{topic: ^uint32(0), partition: int32(p.Partition), offset: p.Offset, index: int32(p.Index)}
		}
		id = uint32(len(ix.topics) + 1)
		ix.topics[p.Topic] = id
	}
	return pos{topic: id, partition: int32(p.Partition), offset: p.Offset, index: int32(p.Index)}
}

// newer orders the changes of one membership: higher version first, then
// the later position (so the order is a function of the set).
func newer(a, b *entry) bool {
	if a.version != b.version {
		return a.version > b.version
	}
	return b.src.less(a.src)
}

// Apply records one change of a (list, group) membership. The newest
// change (highest version) is the membership's state; a few older ones are
// kept for DropReasonAt. A repeated change changes nothing.
func (ix *Index) Apply(c Change) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := entry{list: c.List, group: c.GroupID, version: c.Version(), deleted: c.Deleted, why: c.ReasonCode, src: ix.posOf(c.Src, true)}
	k := key(c.AccountID, c.EmailNorm)
	es := ix.m[k]
	// The membership's changes are a run of es, newest first.
	first, n := -1, 0
	for i := range es {
		if es[i].list == e.list && es[i].group == e.group {
			if first < 0 {
				first = i
			}
			n++
		} else if first >= 0 {
			break
		}
	}
	if first < 0 {
		ix.m[k] = append(es, e)
		if !e.deleted {
			ix.active++
		}
		return
	}
	run := es[first : first+n]
	at := len(run)
	for i := range run {
		if run[i].version == e.version && run[i].src == e.src {
			return // a repeat
		}
		if newer(&e, &run[i]) {
			at = i
			break
		}
	}
	if at == keptChanges {
		return // older than every change kept: it decides nothing
	}
	wasActive := !run[0].deleted
	if n < keptChanges {
		es = slices.Insert(es, first+at, e)
	} else {
		copy(run[at+1:], run[at:n-1])
		run[at] = e
	}
	ix.m[k] = es
	if isActive := !es[first].deleted; isActive != wasActive {
		if isActive {
			ix.active++
		} else {
			ix.active--
		}
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
	es := ix.m[key(account, emailNorm)]
	for i := range es {
		e := &es[i]
		if i > 0 && es[i-1].list == e.list && es[i-1].group == e.group {
			continue // an older change of the same membership
		}
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
// or "" when it may be sent to, from every change the index holds; see
// DropReasonAt.
func (ix *Index) DropReason(account, emailNorm string, group int64, at int64) string {
	return ix.DropReasonAt(account, emailNorm, group, at, Position{})
}

// DropReasonAt returns SendGrid's dropped reason for the message of the
// event at position asOf, or "" when it may be sent to: bounces, spam
// reports, global unsubscribes (or a group unsubscribe of the message's
// group) and invalid addresses drop a message; blocks do not.
//
// The changes caused by events at or after asOf in its partition are not
// seen, so the answer for an event is the same whether the index already
// learnt what later events did (a replayed batch, a consumer behind
// another) or not. Of the rest, the newest change of each membership
// decides, and only if it began at or before at (unix seconds, the event
// time of the message), so a message is never dropped for a bounce that
// came after it.
func (ix *Index) DropReasonAt(account, emailNorm string, group int64, at int64, asOf Position) string {
	limit := uint64(max(at, 0))*2 + 1
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	q := ix.posOf(asOf, false)
	best := ""
	rank := 99
	es := ix.m[key(account, emailNorm)]
	for i := 0; i < len(es); i++ {
		e := &es[i]
		if e.src.atOrAfter(q) {
			continue // caused by this event or a later one: try an older change
		}
		// e is the newest change of its membership the event may see: skip
		// the membership's other changes.
		for i+1 < len(es) && es[i+1].list == e.list && es[i+1].group == e.group {
			i++
		}
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
