// Package claims keeps the per-account limits of webhook subscriptions (at
// most Max of them, no two with one URL) when several API processes write
// them at once, without transactions in the store.
//
// Every change that can break a limit (a create, a URL change, a delete) is
// first appended as a Claim to a Kafka partition chosen by the account, so
// Kafka's offsets put all changes of one account in one total order. The
// outcome of a claim is a pure function of the claims before it in that
// partition (Decide): replaying the log from its start in offset order, a
// create is accepted while the account has fewer than Max live
// subscriptions and none with its URL, a URL change while no other live
// subscription has the URL, a delete always. Whoever computes it (the
// process that made the claim, another process, a retry after a crash)
// gets the same answer, so two processes can never both accept the sixth
// subscription: one of them comes later in the log and sees the other.
//
// Guarantees:
//   - Among the claims of an account, accepted creates never make more than
//     Max live subscriptions, and accepted creates and URL changes never
//     give two live subscriptions one URL. The store holds what was
//     accepted: a claimer writes its row only after its claim is accepted,
//     and Repairs lists the rows a claimer accepted but did not write
//     (it crashed), so the next claim of the account writes them.
//   - Subscriptions written before the log existed ("existing" rows that no
//     create claim names) count first, in the order given.
//   - The decision needs the whole partition up to the claim: a claim reads
//     every claim of the accounts that share its partition. That is cheap
//     for webhook settings (people change them, not machines), and the
//     topic is never compacted (compaction would drop claims later ones
//     depend on).
//
// What it does not do: it does not order changes that cannot break a limit
// (a friendly name, the event types, signing): those go straight to the
// store, newest version wins, as before. The partition count of the topic
// must never change (an account's claims must stay in one partition).
package claims

import (
	"encoding/json"
	"fmt"
)

// Op is what a claim changes.
type Op string

const (
	// OpCreate adds subscription ID with URL.
	OpCreate Op = "create"
	// OpURL changes the URL of subscription ID from OldURL to URL.
	OpURL Op = "url"
	// OpDelete removes subscription ID.
	OpDelete Op = "delete"
)

// Claim is one change of an account's subscriptions, as the log holds it.
type Claim struct {
	Op Op `json:"op"`
	// Scope names the store the claim is about (its database), so that
	// deployments sharing a Kafka cluster never count each other's claims.
	Scope   string `json:"scope"`
	Account string `json:"account"`
	ID      string `json:"id"`
	URL     string `json:"url,omitempty"`
	// OldURL is, for OpURL, the URL before the change.
	OldURL string `json:"old_url,omitempty"`
	// Version is the store version the claimer writes when accepted.
	Version uint64 `json:"version"`
	// Row is what the claimer writes to the store when accepted (opaque
	// here; sealed secrets only), so that another process can write it if
	// the claimer cannot.
	Row json.RawMessage `json:"row,omitempty"`

	// Partitions is the topic's partition count when the claim was
	// appended: a reader that finds another count refuses to decide (an
	// account's earlier claims would be in another partition).
	Partitions int `json:"partitions"`

	// Partition and Offset are where the claim is in the log (set when
	// appended or read).
	Partition int   `json:"-"`
	Offset    int64 `json:"-"`
}

// Existing is a subscription as the store holds it (its newest version).
type Existing struct {
	ID, URL string
	// Deleted: the newest version is a tombstone.
	Deleted bool
	Version uint64
}

// Outcome says what became of a claim.
type Outcome int

const (
	// Accepted: the change holds.
	Accepted Outcome = iota
	// LimitReached: a create when the account had Max live subscriptions.
	LimitReached
	// URLTaken: another live subscription (Result.By) has the URL.
	URLTaken
	// NotFound: a URL change of a subscription that is not live.
	NotFound
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case LimitReached:
		return "limit reached"
	case URLTaken:
		return "url taken"
	case NotFound:
		return "not found"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is the outcome of one claim; By names the subscription that holds
// the URL when the outcome is URLTaken.
type Result struct {
	Outcome Outcome
	By      string
}

// Decide replays one account's claims (in offset order) over the
// subscriptions the store held before the log (existing; the ones a create
// claim names are ignored) and returns each claim's result by offset. A
// claim repeated under the same ID (a retry) gets the first one's result.
func Decide(max int, existing []Existing, log []Claim) map[int64]Result {
	created := map[string]bool{}
	firstOldURL := map[string]string{}
	deletedByClaim := map[string]bool{}
	for _, c := range log {
		switch c.Op {
		case OpCreate:
			created[c.ID] = true
		case OpURL:
			if _, ok := firstOldURL[c.ID]; !ok {
				firstOldURL[c.ID] = c.OldURL
			}
		case OpDelete:
			deletedByClaim[c.ID] = true
		}
	}
	// live holds the live subscriptions in rank order.
	var live []string
	url := map[string]string{}
	for _, e := range existing {
		if created[e.ID] || url[e.ID] != "" {
			continue
		}
		// A tombstone the log explains (a delete claim) was live before it.
		if e.Deleted && !deletedByClaim[e.ID] {
			continue
		}
		u := e.URL
		if old, ok := firstOldURL[e.ID]; ok {
			u = old
		}
		live = append(live, e.ID)
		url[e.ID] = u
	}
	holder := func(u, except string) string {
		for _, id := range live {
			if id != except && url[id] == u {
				return id
			}
		}
		return ""
	}
	isLive := func(id string) bool {
		for _, l := range live {
			if l == id {
				return true
			}
		}
		return false
	}
	out := make(map[int64]Result, len(log))
	firstCreate := map[string]Result{}
	for _, c := range log {
		var r Result
		switch c.Op {
		case OpCreate:
			if prev, ok := firstCreate[c.ID]; ok {
				r = prev
				break
			}
			switch by := holder(c.URL, ""); {
			case len(live) >= max:
				r = Result{Outcome: LimitReached}
			case by != "":
				r = Result{Outcome: URLTaken, By: by}
			default:
				live = append(live, c.ID)
				url[c.ID] = c.URL
			}
			firstCreate[c.ID] = r
		case OpURL:
			if !isLive(c.ID) {
				r = Result{Outcome: NotFound}
			} else if by := holder(c.URL, c.ID); by != "" {
				r = Result{Outcome: URLTaken, By: by}
			} else {
				url[c.ID] = c.URL
			}
		case OpDelete:
			for i, id := range live {
				if id == c.ID {
					live = append(live[:i], live[i+1:]...)
					delete(url, c.ID)
					break
				}
			}
		}
		out[c.Offset] = r
	}
	return out
}

// Repairs returns the accepted claims whose effect the store does not show
// (its version of the subscription is older than the claim's, or it has
// none), in log order: the claimer accepted them but did not write them.
// Writing each claim's Row (a tombstone for a delete) in that order makes
// the store agree with the log.
func Repairs(log []Claim, results map[int64]Result, existing []Existing) []Claim {
	version := map[string]uint64{}
	for _, e := range existing {
		version[e.ID] = e.Version
	}
	var out []Claim
	for _, c := range log {
		if results[c.Offset].Outcome != Accepted || c.Version <= version[c.ID] {
			continue
		}
		out = append(out, c)
		version[c.ID] = c.Version
	}
	return out
}
