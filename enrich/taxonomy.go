package enrich

// BounceType says what a bounce means for the recipient address.
type BounceType string

const (
	// Hard: the address itself is invalid (no such user or domain, moved).
	// The address goes on the bounce list and future sends to it are dropped.
	Hard BounceType = "hard"
	// Soft: the recipient is fine, something else failed (mailbox full, a
	// block on the sender, a rate limit, a remote error). Not suppressed.
	Soft BounceType = "soft"
)

// Classification is one of SendGrid's seven bounce classifications, spelled
// exactly as SendGrid spells them.
type Classification string

const (
	InvalidAddress     Classification = "Invalid Address"
	MailboxUnavailable Classification = "Mailbox Unavailable"
	TechnicalFailure   Classification = "Technical Failure"
	Content            Classification = "Content"
	Reputation         Classification = "Reputation"
	FrequencyOrVolume  Classification = "Frequency or Volume Too High"
	Unclassified       Classification = "Unclassified"
)

// Classifications lists the seven in SendGrid's order.
var Classifications = []Classification{
	InvalidAddress, MailboxUnavailable, TechnicalFailure, Content,
	Reputation, FrequencyOrVolume, Unclassified,
}

// Reason is bouncer's finer reason code. The set is closed: rules files can
// only use these, and docs/classification.md explains each.
type Reason string

// ReasonInfo describes one reason of the taxonomy.
type ReasonInfo struct {
	Reason Reason
	// Class is the SendGrid classification every bounce with this reason gets.
	Class Classification
	// MayBeHard is true for the reasons that say the address is invalid.
	// Such a bounce is hard unless its reply code is 4xx or the event is a
	// deferral; every other reason is always soft.
	MayBeHard bool
	// Doc is a one-line explanation for docs and --help.
	Doc string
}

// Taxonomy is the closed list of reasons, in documentation order.
var Taxonomy = []ReasonInfo{
	{"user_unknown", InvalidAddress, true, "the mailbox does not exist at the receiving domain"},
	{"domain_invalid", InvalidAddress, true, "the recipient domain does not exist or accepts no mail (NXDOMAIN, null MX)"},
	{"mailbox_moved", InvalidAddress, true, "the recipient has moved and left no forwarding (5.1.6)"},
	{"address_invalid", InvalidAddress, true, "the address is syntactically invalid"},
	{"mailbox_disabled", MailboxUnavailable, false, "the mailbox exists but is disabled, suspended or inactive"},
	{"mailbox_full", MailboxUnavailable, false, "the mailbox is over quota"},
	{"recipient_filtered", MailboxUnavailable, false, "the recipient (not the sender) refuses this mail: filters, allow lists, restricted groups"},
	{"message_too_large", TechnicalFailure, false, "the message exceeds a size limit"},
	{"spam_content", Content, false, "the content was judged spam"},
	{"virus_or_attachment", Content, false, "a virus or a forbidden attachment was found"},
	{"policy_violation", Content, false, "the receiver's content or sending policy rejected the message"},
	{"content_format", TechnicalFailure, false, "the message is malformed or not RFC 5322 compliant"},
	{"ip_blocked", Reputation, false, "the sending IP or domain is on a block list (DNSBL) or blocked by the receiver"},
	{"bad_reputation", Reputation, false, "the sender's reputation is too low"},
	{"rate_limited", FrequencyOrVolume, false, "too many messages, recipients or connections"},
	{"greylisted", FrequencyOrVolume, false, "greylisting: try again later"},
	{"auth_failure", TechnicalFailure, false, "SPF, DKIM or DMARC failed"},
	{"ptr_required", TechnicalFailure, false, "the sending IP has no valid reverse DNS"},
	{"sender_rejected", TechnicalFailure, false, "the envelope sender or its domain was refused"},
	{"relay_denied", TechnicalFailure, false, "the receiving host will not relay for this recipient"},
	{"tls_or_security", TechnicalFailure, false, "TLS or another transport security requirement failed"},
	{"remote_system_error", TechnicalFailure, false, "the receiving system failed, is full, or broke the protocol"},
	{"network_error", TechnicalFailure, false, "DNS failure, timeout, refused connection or mail loop"},
	{"expired", TechnicalFailure, false, "the message stayed queued too long and was given up"},
	{"unclassified", Unclassified, false, "no rule understood the response"},
}

var reasonIndex = func() map[Reason]ReasonInfo {
	m := make(map[Reason]ReasonInfo, len(Taxonomy))
	for _, r := range Taxonomy {
		m[r.Reason] = r
	}
	return m
}()

// LookupReason returns the taxonomy entry of r.
func LookupReason(r Reason) (ReasonInfo, bool) {
	info, ok := reasonIndex[r]
	return info, ok
}
