package analytics

import (
	"encoding/json"
	"strconv"
	"time"
)

// Download states.
const (
	DownloadPending = "pending"
	DownloadReady   = "ready"
	DownloadFailed  = "failed"
)

// Download is the state of one email activity CSV download (SendGrid's
// POST /v3/messages/download).
type Download struct {
	ID, Account string
	// Query is the activity query it was asked with ("" for every
	// message).
	Query  string
	Status string // DownloadPending, DownloadReady or DownloadFailed
	// Rows are the events written so far; Total the events the file holds
	// when done (0 until counted).
	Rows, Total uint64
	// Bytes and Parts are the file's size and its number of stored parts
	// so far.
	Bytes uint64
	Parts uint32
	// Error says why a failed download failed, in words safe to show.
	Error string
	// Token is the secret the download's links are signed with.
	Token string
	// Created is when it was asked for, Updated its last change, Expires
	// when it (and its file) go away.
	Created, Updated, Expires time.Time
}

// ExportColumns are the columns of an activity CSV, in order.
var ExportColumns = []string{"event_time", "msg_id", "event", "to_email", "from_email", "subject", "status", "reason",
	"type", "bounce_type", "url", "user_agent", "ip", "categories", "asm_group_id", "sg_event_id"}

// ExportEvent is one event of an activity CSV.
type ExportEvent struct {
	Time                                    time.Time
	MsgID, Event, Email, FromEmail, Subject string
	Status, Reason, Type, BounceType, URL   string
	UserAgent, IP, SGEventID                string
	Categories                              []string
	AsmGroupID                              int64
}

// Record appends the event's cells (ExportColumns' order) to dst: the
// time as SendGrid's "2006-01-02 15:04:05" in UTC, categories as a JSON
// array, a group id of 0 as an empty cell.
func (e *ExportEvent) Record(dst []string) []string {
	cats := "[]"
	if len(e.Categories) > 0 {
		b, _ := json.Marshal(e.Categories)
		cats = string(b)
	}
	group := ""
	if e.AsmGroupID != 0 {
		group = strconv.FormatInt(e.AsmGroupID, 10)
	}
	return append(dst, e.Time.UTC().Format("2006-01-02 15:04:05"), e.MsgID, e.Event, e.Email, e.FromEmail, e.Subject,
		e.Status, e.Reason, e.Type, e.BounceType, e.URL, e.UserAgent, e.IP, cats, group, e.SGEventID)
}
