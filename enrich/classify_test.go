package enrich

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClassifyCases(t *testing.T) {
	c := MustNew()
	tests := []struct {
		name   string
		in     Input
		typ    BounceType
		reason Reason
		rule   string
	}{
		{"gmail does not exist", Input{Email: "a@gmail.com", Reason: "550-5.1.1 The email account that you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's email address - gsmtp"}, Hard, "user_unknown", "google.user_unknown.does_not_exist"},
		{"outlook 5.5.0 mailbox unavailable is an unknown user", Input{Email: "a@outlook.com", Reason: "550 5.5.0 Requested action not taken: mailbox unavailable"}, Hard, "user_unknown", "microsoft.user_unknown.mailbox_unavailable"},
		{"yahoo codeless dd", Input{Email: "a@yahoo.com", Reason: "554 delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]"}, Hard, "user_unknown", "yahoo.user_unknown.dd"},
		{"552 that means no such user", Input{Reason: "552 5.2.2 <a@example.com>... No such user here"}, Hard, "user_unknown", "generic.user_unknown"},
		{"5.7.1 that is a spam block", Input{Reason: "550 5.7.1 Message rejected as spam by Content Filtering."}, Soft, "spam_content", "generic.content.spam"},
		{"5.1.1 text about recipients per hour is a rate limit", Input{Reason: "550 5.1.1 <a@example.net> sent to too many recipients this hour. IB607"}, Soft, "rate_limited", "godaddy.rate.ib607"},
		{"4xx user unknown is soft", Input{Reason: "450 4.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient table"}, Soft, "user_unknown", "generic.user_unknown"},
		{"deferral is soft", Input{Event: "deferred", Response: "550 5.1.1 user unknown"}, Soft, "user_unknown", "generic.user_unknown"},
		{"generic status yields to the text's code", Input{Status: "5.0.0", Reason: "smtp; 550 5.1.6 recipient has moved"}, Hard, "mailbox_moved", "generic.mailbox_moved"},
		{"status alone", Input{Status: "5.1.1"}, Hard, "user_unknown", "status.x.1.1"},
		{"temporary dns failure is not a dead domain", Input{Reason: "Host or domain name not found. Name service error for name=example.org type=MX: Host not found, try again"}, Soft, "network_error", "generic.network.dns_try_again"},
		{"dead domain", Input{Reason: "Host or domain name not found. Name service error for name=nxdomain.example type=A: Host not found"}, Hard, "domain_invalid", "generic.domain_invalid.host_unknown"},
		{"null mx", Input{Reason: "556 5.1.10 Recipient address has null MX"}, Hard, "domain_invalid", "generic.domain_invalid.null_mx"},
		{"sender domain not found is not the recipient's", Input{Reason: "450 4.1.8 <bounce@sender.example>: Sender address rejected: Domain not found"}, Soft, "sender_rejected", "generic.sender_rejected.sender_address"},
		{"spamhaus", Input{Reason: "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"}, Soft, "ip_blocked", "generic.blocked.dnsbl"},
		{"greylisting", Input{Event: "deferred", Response: "451 4.7.1 <a@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/"}, Soft, "greylisted", "generic.greylisted"},
		{"mailbox full", Input{Reason: "552 5.2.2 Mailbox full"}, Soft, "mailbox_full", "generic.mailbox_full"},
		{"blocked hint on a bare 5.7.1", Input{Type: "blocked", Reason: "550 5.7.1 Rejected"}, Soft, "ip_blocked", "status.x.7.blocked"},
		{"nothing to go on", Input{Reason: "it did not work"}, Soft, "unclassified", RuleNoMatch},
		{"blocked as event name", Input{Event: "blocked", Reason: "550 5.7.1 Rejected"}, Soft, "ip_blocked", "status.x.7.blocked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.Classify(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.BounceType != tt.typ || res.Reason != tt.reason || res.Rule != tt.rule {
				t.Errorf("got %s/%s by %s, want %s/%s by %s", res.BounceType, res.Reason, res.Rule, tt.typ, tt.reason, tt.rule)
			}
			info, _ := LookupReason(res.Reason)
			if res.Classification != info.Class {
				t.Errorf("classification %q, want %q", res.Classification, info.Class)
			}
		})
	}
}

func TestClassifyRejectsNonBounces(t *testing.T) {
	c := MustNew()
	for _, ev := range []string{"delivered", "open", "processed", "BOUNCE"} {
		if _, err := c.Classify(Input{Event: ev, Reason: "550 user unknown"}); err == nil {
			t.Errorf("event %q: want an error", ev)
		}
	}
}

func TestClassifyHugeTextIsBounded(t *testing.T) {
	c := MustNew()
	text := "550 5.2.2 mailbox full " + strings.Repeat("x", 10<<20)
	res, err := c.Classify(Input{Reason: text})
	if err != nil || res.Reason != "mailbox_full" {
		t.Fatalf("got %+v, %v", res, err)
	}
}

// corpusTexts returns every diagnostic text of the test corpora.
func corpusTexts(t testing.TB) []string {
	t.Helper()
	var texts []string
	for _, f := range []struct {
		path string
		col  string
	}{{"testdata/corpus.tsv", "text"}, {"testdata/sisimai/corpus.tsv", "diagnostic_text"}, {"testdata/languages.tsv", "text"}} {
		rows := readTSV(t, f.path)
		for _, r := range rows {
			texts = append(texts, r[f.col])
		}
	}
	return texts
}

// readTSV reads a tab-separated file with a header line into maps.
func readTSV(t testing.TB, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open corpus: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var header []string
	var rows []map[string]string
	for line := 1; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), "\t")
		if header == nil {
			header = fields
			continue
		}
		if len(fields) != len(header) {
			t.Fatalf("%s:%d: %d fields, want %d", path, line, len(fields), len(header))
		}
		row := map[string]string{}
		for i, h := range header {
			row[h] = fields[i]
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"550 5.1.1 user unknown", "550-5.1.1 a\n550-5.1.1 b", "(#5.1.1)", "said: 421 4.7.0 try again",
		"554 delivery error: dd This user doesn't have a yahoo.com account", "", "5.7.606-649", "\xff\xfe 550",
	} {
		f.Add(s, "", "", "bounce", "a@gmail.com")
	}
	f.Add("451 greylisted", "4.7.1", "blocked", "deferred", "x@yahoo.com")
	c := MustNew()
	f.Fuzz(func(t *testing.T, text, status, typ, event, email string) {
		in := Input{Reason: text, Status: status, Type: typ, Event: event, Email: email}
		a, errA := c.Classify(in)
		b, errB := c.Classify(in)
		if (errA == nil) != (errB == nil) || a != b {
			t.Fatalf("not deterministic: %+v %v / %+v %v", a, errA, b, errB)
		}
		if errA != nil {
			return
		}
		info, ok := LookupReason(a.Reason)
		if !ok {
			t.Fatalf("reason %q not in the taxonomy", a.Reason)
		}
		valid := false
		for _, cl := range Classifications {
			valid = valid || cl == a.Classification
		}
		if !valid || a.Classification != info.Class {
			t.Fatalf("classification %q invalid for %q", a.Classification, a.Reason)
		}
		if a.BounceType != Hard && a.BounceType != Soft {
			t.Fatalf("bounce type %q", a.BounceType)
		}
		if a.BounceType == Hard && (!info.MayBeHard || event == "deferred") {
			t.Fatalf("hard with reason %q event %q", a.Reason, event)
		}
		if a.Rule == "" || !utf8.ValidString(a.Rule) {
			t.Fatalf("rule id %q", a.Rule)
		}
	})
}

func readTSVIfPresent(t testing.TB, path string) []map[string]string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return readTSV(t, path)
}

// TestDecidedBy: a text rule, a rule on the status code alone and no rule
// are told apart (what bouncer classify --unmatched reports on).
func TestDecidedBy(t *testing.T) {
	c := MustNew()
	for _, tc := range []struct {
		reason, status, want string
	}{
		{"550 5.1.1 The email account that you tried to reach does not exist.", "", DecidedByText},
		{"550 5.1.1 zorgle", "", DecidedByCode},
		{"zorgle", "5.2.2", DecidedByCode},
		{"zorgle flux", "", DecidedByNone},
	} {
		res, err := c.Classify(Input{Event: "bounce", Reason: tc.reason, Status: tc.status})
		if err != nil {
			t.Fatal(err)
		}
		if res.DecidedBy != tc.want {
			t.Errorf("%q (status %q): decided by %q (rule %s), want %q", tc.reason, tc.status, res.DecidedBy, res.Rule, tc.want)
		}
	}
}
