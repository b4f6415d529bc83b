package enrich

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// sisimaiReasons maps sisimai's reasons onto bouncer's taxonomy.
var sisimaiReasons = map[string]Reason{
	"userunknown": "user_unknown", "hostunknown": "domain_invalid", "notaccept": "domain_invalid",
	"hasmoved": "mailbox_moved", "suspend": "mailbox_disabled", "mailboxfull": "mailbox_full",
	"filtered": "recipient_filtered", "mesgtoobig": "message_too_large", "exceedlimit": "message_too_large",
	"emailtoolarge": "message_too_large", "spamdetected": "spam_content", "virusdetected": "virus_or_attachment",
	"policyviolation": "policy_violation", "contenterror": "content_format", "notcompliantrfc": "content_format",
	"blocked": "ip_blocked", "badreputation": "bad_reputation", "speeding": "rate_limited",
	"toomanyconn": "rate_limited", "ratelimited": "rate_limited", "authfailure": "auth_failure",
	"requireptr": "ptr_required", "rejected": "sender_rejected", "norelaying": "relay_denied",
	"securityerror": "tls_or_security", "failedstarttls": "tls_or_security", "systemerror": "remote_system_error",
	"systemfull": "remote_system_error", "mailererror": "remote_system_error", "syntaxerror": "remote_system_error",
	"networkerror": "network_error", "expired": "expired", "onhold": "unclassified", "undefined": "unclassified",
}

// TestSisimaiAgreement measures agreement with sisimai's verdicts on its
// public corpus (sisimai-internal status codes blanked, as they never appear
// on the wire). Run with -v for the report; the test fails only if hard/soft
// agreement falls below a floor well under today's figure, to catch a rule
// change that breaks many verdicts at once.
func TestSisimaiAgreement(t *testing.T) {
	c := MustNew()
	rows := readTSV(t, "testdata/sisimai/corpus.tsv")
	type group struct {
		n       int
		example string
	}
	var typeTotal, typeAgree, reasonTotal, reasonAgree int
	disagree := map[string]*group{}
	for _, row := range rows {
		want, ok := sisimaiReasons[row["expected_reason"]]
		if !ok || row["expected_hard_soft"] == "none" {
			continue // feedback, vacation, delivered: not bounces
		}
		status := row["enhanced_status"]
		if row["status_origin"] == "sisimai-internal" {
			status = ""
		}
		res, err := c.Classify(Input{Reason: row["diagnostic_text"], Status: status, Email: "x@" + row["destination_domain"]})
		if err != nil {
			t.Fatal(err)
		}
		typeTotal++
		if string(res.BounceType) == row["expected_hard_soft"] {
			typeAgree++
		}
		reasonTotal++
		if res.Reason == want {
			reasonAgree++
			continue
		}
		key := fmt.Sprintf("sisimai %s (%s) -> bouncer %s (%s)", row["expected_reason"], row["expected_hard_soft"], res.Reason, res.BounceType)
		g := disagree[key]
		if g == nil {
			text := row["diagnostic_text"]
			if len(text) > 160 {
				text = text[:160] + "..."
			}
			g = &group{example: fmt.Sprintf("[%s] %s", res.Rule, text)}
			disagree[key] = g
		}
		g.n++
	}
	keys := make([]string, 0, len(disagree))
	for k := range disagree {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return disagree[keys[i]].n > disagree[keys[j]].n })
	var b strings.Builder
	fmt.Fprintf(&b, "hard/soft agreement: %d/%d = %.1f%%\n", typeAgree, typeTotal, 100*float64(typeAgree)/float64(typeTotal))
	fmt.Fprintf(&b, "reason agreement:    %d/%d = %.1f%%\n", reasonAgree, reasonTotal, 100*float64(reasonAgree)/float64(reasonTotal))
	for _, k := range keys {
		fmt.Fprintf(&b, "%4d  %s\n      e.g. %s\n", disagree[k].n, k, disagree[k].example)
	}
	t.Log("\n" + b.String())
	if float64(typeAgree) < 0.80*float64(typeTotal) {
		t.Errorf("hard/soft agreement with sisimai fell to %d/%d", typeAgree, typeTotal)
	}
}
