package enrich

import "time"

// UnmatchedQuery selects the stored bounces and deferrals whose
// classification no text rule decided (DecidedBy code or none), for the
// report of what no rule knows (bouncer classify --unmatched, the
// dashboard's panel).
type UnmatchedQuery struct {
	// Account limits the report to one account; "" is every account.
	Account string
	// Since and Until bound the events' time: Since <= timestamp < Until.
	Since, Until time.Time
	// Limit is how many groups to return, most frequent first; 0 means 50.
	Limit int
}

// UnmatchedText is one group of the report: reply texts that are the same
// once lower-cased, white space folded and addresses (<addr>), IP
// addresses (<ip>), ids (words mixing letters and digits: <id>) and other
// numbers (<n>) masked, with the reply and status codes found in them.
type UnmatchedText struct {
	Text      string `json:"text"`
	ReplyCode string `json:"reply_code"`
	Status    string `json:"status"`
	Count     uint64 `json:"count"`
	// Unclassified counts the texts of the group no rule at all decided
	// (the others were decided by their code alone).
	Unclassified uint64 `json:"unclassified"`
	// Providers are the mailbox providers of the recipients (up to 10;
	// "other" for unknown ones), Rules the code rules that decided (up
	// to 5).
	Providers []string `json:"providers"`
	Rules     []string `json:"rules"`
	// Example is the newest original text of the group, At its time.
	Example string    `json:"example"`
	At      time.Time `json:"at"`
}

// UnmatchedReport is the answer to an UnmatchedQuery.
type UnmatchedReport struct {
	Groups []UnmatchedText `json:"groups"`
	// Total counts the bounces and deferrals of the window; Unmatched
	// those no text rule decided; Unknown those stored before bouncer
	// recorded what decided (events.decided_by = ''), which the report
	// cannot place (bouncer reclassify fills it in).
	Total     uint64 `json:"total"`
	Unmatched uint64 `json:"unmatched"`
	Unknown   uint64 `json:"unknown"`
}
