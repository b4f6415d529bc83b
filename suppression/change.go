package suppression

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Suppression lists.
const (
	ListBounces       = "bounces"
	ListBlocks        = "blocks"
	ListInvalidEmails = "invalid_emails"
	ListSpamReports   = "spam_reports"
	ListUnsubscribes  = "unsubscribes"
)

// Change adds (Deleted false) or removes an address from a list.
type Change struct {
	AccountID string
	List      string
	// GroupID is the unsubscribe group for group unsubscribes, else 0.
	GroupID   int64
	EmailNorm string
	Email     string
	// At is the event time; later changes win.
	At             time.Time
	Reason, Status string
	Classification string
	ReasonCode     string
	Deleted        bool
	// Source says what caused the change, e.g. "event:<sg_event_id>",
	// "api", "import" or "erase".
	Source string
	// Src is the position of the event that caused the change in the event
	// stream (zero for changes made elsewhere): a derived-drop decision for
	// an event at or before it in its partition does not see the change
	// (Index.DropReasonAt).
	Src Position
}

// Version orders changes to one list entry by event time: unix seconds
// times two, plus one for a removal, so a removal wins a tie with an
// addition in the same second and the newest change wins whatever order
// changes arrive in.
func (c Change) Version() uint64 {
	v := uint64(max(c.At.Unix(), 0)) * 2
	if c.Deleted {
		v++
	}
	return v
}

// Entry is the current state of one list entry.
type Entry struct {
	Email, EmailNorm string
	Created          time.Time
	Reason, Status   string
	Classification   string
	ReasonCode       string
}

// Query selects current entries of one list of an account.
type Query struct {
	List    string
	GroupID int64
	// EmailLike is a LIKE pattern on the normalised address; "" matches all.
	EmailLike string
	// From and To bound created, unix seconds, inclusive; To 0: no bound.
	From, To uint32
	// Bounce, on the bounces list, selects hard or soft bounces: "soft"
	// are entries whose status is 4.x.x (bouncer's pipeline lists only
	// hard bounces; soft ones come from imported SendGrid exports), "hard"
	// the others; "" all.
	Bounce string
	// Offset and Limit page the result, newest first; Limit 0 means 500.
	Offset, Limit uint64
}

// Key is one list entry of an address (any state).
type Key struct {
	List    string
	GroupID int64
	Email   string
	// Latest is the newest created time of the entry's changes: a removal
	// announced for it must be stamped no earlier to win.
	Latest time.Time
}

// ErasedTable is what an erasure removed from one table.
type ErasedTable struct {
	Table string `json:"table"`
	Rows  uint64 `json:"rows"`
}

// Erasure is the record of one erasure: never the address, only the
// lower-case hex SHA-256 of its normalised form (EmailSHA256).
type Erasure struct {
	AccountID   string
	ID          string
	EmailSHA256 string
	// RequestedBy is "key:<key id>" for the API, "cli" or "cli:<user>" for
	// bouncer erase.
	RequestedBy string
	At          time.Time
	Tables      []ErasedTable
	// Skipped lists tables that could hold the address but were not
	// searched, with why (only in the answer to the erasure itself).
	Skipped []string
}

// EraseOptions tune an erasure.
type EraseOptions struct {
	// AllDeadLetters erases every dead letter whose raw bytes mention the
	// address, whatever account they name (for operators; the API never
	// sets it). Default: only dead letters attributable to the account.
	AllDeadLetters bool
	// Wait bounds the wait for each table's mutation; default 2 minutes.
	Wait time.Duration
	// Poll is how often the store checks a mutation while waiting;
	// default 100ms.
	Poll time.Duration
}

// EmailSHA256 is how an erased address is recorded: the lower-case hex
// SHA-256 of its normalised form. ClickHouse computes the same with
// lower(hex(SHA256(email_norm))).
func EmailSHA256(emailNorm string) string {
	sum := sha256.Sum256([]byte(emailNorm))
	return hex.EncodeToString(sum[:])
}
