package schemas

import "time"

// EventType is SendGrid's `event` field. The set is closed: any other value is
// rejected with [CodeUnknownEvent].
type EventType string

// The event types SendGrid's Event Webhook sends. A block is a [EventBounce]
// whose Type is [TypeBlocked].
const (
	EventProcessed        EventType = "processed"
	EventDelivered        EventType = "delivered"
	EventDeferred         EventType = "deferred"
	EventBounce           EventType = "bounce"
	EventDropped          EventType = "dropped"
	EventOpen             EventType = "open"
	EventClick            EventType = "click"
	EventSpamReport       EventType = "spamreport"
	EventUnsubscribe      EventType = "unsubscribe"
	EventGroupUnsubscribe EventType = "group_unsubscribe"
	EventGroupResubscribe EventType = "group_resubscribe"
)

// EventTypes lists every accepted EventType, in SendGrid's documentation order.
func EventTypes() []EventType {
	return []EventType{
		EventProcessed, EventDelivered, EventDeferred, EventBounce, EventDropped,
		EventOpen, EventClick, EventSpamReport, EventUnsubscribe,
		EventGroupUnsubscribe, EventGroupResubscribe,
	}
}

// Values of SendGrid's `type` field.
const (
	TypeBounce  = "bounce"
	TypeBlocked = "blocked"
)

// DefaultAccountID is the account of an event that carries no account_id.
const DefaultAccountID = "default"

// Coordinates locate a Kafka message. Together with an element's index inside
// the message they are the identity of an event row.
type Coordinates struct {
	Topic     string
	Partition int
	Offset    int64
}

// Event is one decoded SendGrid event. String fields are "" when the key was
// absent; numeric fields are 0. All strings of the events decoded from one
// message share one backing allocation.
type Event struct {
	// Where the event came from: the message's coordinates and the element's
	// position in it (0 for a message holding a single object).
	Topic     string
	Partition int
	Offset    int64
	Index     int

	// AccountID is the producer's account_id, or DefaultAccountID when absent.
	AccountID string

	// Event is SendGrid's `event`; always one of the EventType constants.
	Event EventType
	// Type is SendGrid's `type`: TypeBounce or TypeBlocked. A bounce event
	// without `type` gets TypeBounce; other events keep what was sent (usually "").
	Type string

	// Email is the recipient exactly as sent. EmailNorm is the same address
	// trimmed of ASCII white space with ASCII capitals lower-cased, other
	// characters unchanged (compare addresses with it; NormalizeAddress);
	// Domain is the part of EmailNorm after its last '@'.
	Email     string
	EmailNorm string
	Domain    string
	// AddressValid reports whether EmailNorm passes the strict syntax check
	// (dot-atom local part of at most 64 octets, a domain of at least two LDH
	// labels with a non-numeric top label, at most 254 octets in all, ASCII only).
	// An address that fails it is still decoded, for the invalid_emails list.
	AddressValid bool

	// Timestamp is SendGrid's `timestamp`, in unix seconds (0..2^32-1).
	Timestamp int64

	// SGEventID is SendGrid's `sg_event_id`. When the producer sent none (or
	// ""), it is derived from the coordinates (see DeriveEventID) and
	// EventIDDerived is true.
	SGEventID      string
	EventIDDerived bool

	SGMessageID string // sg_message_id
	SMTPID      string // smtp-id
	// Categories holds `category`, sent as one string or an array of strings.
	// Nil when absent. Its capacity equals its length, so appending copies.
	Categories []string

	Reason   string // reason: the diagnostic text of bounce, dropped, deferred
	Status   string // status: enhanced status code, e.g. "5.1.1"
	Response string // response: the receiving server's reply to delivered, deferred
	// Attempt is `attempt` (sent by SendGrid as a string such as "1"; a
	// non-negative integer number is accepted too), 0 when absent.
	Attempt uint32
	// BounceClassification is the producer's `bounce_classification`, kept as
	// sent; bouncer's own classification lives elsewhere.
	BounceClassification string
	IP                   string // ip
	// TLS is true when `tls` was 1.
	TLS        bool
	URL        string // url of a click
	UserAgent  string // useragent of an open or click
	ASMGroupID int64  // asm_group_id, 0 when absent
	FromEmail  string // from_email
	Subject    string // subject

	// Custom holds every other key of the event (SendGrid's custom arguments
	// and any field this contract does not name) as a compact JSON object,
	// keys and values as sent, in input order; "" when there are none.
	Custom string
}

// RejectCode says why an element or a message was rejected. The set is closed
// and the strings are stable: they are written to dead-letter headers and
// metrics labels.
type RejectCode string

// Message-level codes (Rejection.Index == -1): the message as a whole is bad.
const (
	CodeOversize    RejectCode = "oversize"     // longer than Decoder.MaxMessageBytes
	CodeEmpty       RejectCode = "empty"        // 0 bytes or only JSON white space
	CodeInvalidJSON RejectCode = "invalid_json" // not one RFC 8259 JSON value
	CodeEmptyArray  RejectCode = "empty_array"  // []
)

// Codes that apply to the message or to one element.
const (
	// CodeTooDeep: an element nests deeper than Decoder.MaxDepth (the element),
	// or the message nests deeper than 256 (the whole message).
	CodeTooDeep RejectCode = "too_deep"
	// CodeWrongType: a known field, an element or the message has the wrong JSON type.
	CodeWrongType RejectCode = "wrong_type"
)

// Element-level codes.
const (
	CodeNonUTF8          RejectCode = "non_utf8"          // a string or key is not valid UTF-8
	CodeDuplicateKey     RejectCode = "duplicate_key"     // a key repeats within one object, at any depth
	CodeMissingField     RejectCode = "missing_field"     // no event, email or timestamp
	CodeUnknownEvent     RejectCode = "unknown_event"     // event outside EventTypes
	CodeInvalidType      RejectCode = "invalid_type"      // type other than bounce or blocked
	CodeInvalidEmail     RejectCode = "invalid_email"     // not an address at all
	CodeInvalidTimestamp RejectCode = "invalid_timestamp" // not an integer in 0..2^32-1
	CodeFutureTimestamp  RejectCode = "future_timestamp"  // later than Decoder.MaxTimestamp (the clock skew bound)
	CodeInvalidAccount   RejectCode = "invalid_account"   // account_id not 1-64 of [A-Za-z0-9_.-]
	CodeInvalidValue     RejectCode = "invalid_value"     // attempt, tls or asm_group_id out of range
)

// RejectCodes lists every RejectCode, for metrics that pre-register labels.
func RejectCodes() []RejectCode {
	return []RejectCode{
		CodeOversize, CodeEmpty, CodeInvalidJSON, CodeEmptyArray, CodeTooDeep,
		CodeWrongType, CodeNonUTF8, CodeDuplicateKey, CodeMissingField,
		CodeUnknownEvent, CodeInvalidType, CodeInvalidEmail, CodeInvalidTimestamp,
		CodeFutureTimestamp, CodeInvalidAccount, CodeInvalidValue,
	}
}

// Rejection is bad input: one element of a message, or the whole message.
type Rejection struct {
	// Index is the element's position in the message (0 for a single object),
	// or -1 when the message as a whole is rejected.
	Index int
	Code  RejectCode
	// Detail is a readable reason naming the field, e.g.
	// `field "timestamp": want integer unix seconds, got string`.
	Detail string
	// Raw is a copy of the element's bytes, or of the whole message when
	// Index is -1.
	Raw []byte
}

// Error makes a Rejection usable as an error: "code: detail".
func (r Rejection) Error() string { return string(r.Code) + ": " + r.Detail }

// DeadLetter is a rejected message or array element with its coordinates,
// as the dead-letter topic and table keep it.
type DeadLetter struct {
	Topic     string
	Partition int
	Offset    int64
	// Index is the element's position, or -1 for the whole message.
	Index  int
	Code   RejectCode
	Detail string
	Raw    []byte
	Key    []byte
	// IngestedAt is when the dead_letters table took it (zero before).
	IngestedAt time.Time
}
