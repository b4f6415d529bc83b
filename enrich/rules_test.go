package enrich

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestParseRulesErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name string
		file string
		line int
		want string
	}{
		{"unknown reason", "# comment\n\nx.one nosuchreason text: foo\n", 3, "unknown reason"},
		{"bad expression", "x.one user_unknown text: (unclosed\n", 1, "text expression"},
		{"duplicate id", "x.one user_unknown text: a\nx.two user_unknown text: b\nx.one mailbox_full text: c\n", 3, "already defined on line 1"},
		{"unknown key", "x.one user_unknown colour=red\n", 1, "unknown key"},
		{"no condition", "x.one user_unknown\n", 1, "no condition"},
		{"bad status", "x.one user_unknown status=5.1\n", 1, "status"},
		{"bad reply", "x.one user_unknown reply=650\n", 1, "reply"},
		{"bad type", "x.one user_unknown type=soft\n", 1, "type"},
		{"bad id", "X.One user_unknown text: a\n", 1, "rule id"},
		{"empty expression", "x.one user_unknown text:   \n", 1, "empty expression"},
		{"one field", "x.one\n", 1, "want"},
		{"inverted range", "x.one ip_blocked status=5.7.649-606\n", 1, "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRules(strings.NewReader(tt.file), "my.rules")
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a RulesError", err)
			}
			if re.Line != tt.line || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "my.rules:") {
				t.Errorf("err = %q (line %d), want line %d and %q", err, re.Line, tt.line, tt.want)
			}
		})
	}
}

func TestParseRulesFileMissing(t *testing.T) {
	if _, err := ParseRulesFile(filepath.Join(t.TempDir(), "nope.rules")); err == nil {
		t.Fatal("missing file: want an error")
	}
}

func TestOperatorRulesComeFirstAndOverride(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ops.rules")
	file := "# our relay's own wording\n" +
		"acme.full mailbox_full text: box stuffed\n" +
		// Replace the built-in generic user-unknown rule: treat it as filtered.
		"generic.user_unknown recipient_filtered text: user unknown\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, err := ParseRulesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(rules...)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := c.Classify(Input{Reason: "550 box stuffed, user unknown"})
	if res.Rule != "acme.full" || res.Reason != "mailbox_full" {
		t.Errorf("operator rule: got %+v", res)
	}
	res, _ = c.Classify(Input{Reason: "550 user unknown"})
	if res.Rule != "generic.user_unknown" || res.Reason != "recipient_filtered" || res.BounceType != Soft {
		t.Errorf("override: got %+v", res)
	}
	n := 0
	for _, r := range c.Rules() {
		if r.ID == "generic.user_unknown" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("overridden id appears %d times, want 1", n)
	}
}

func TestBuiltinRulesParse(t *testing.T) {
	rules, err := BuiltinRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) < 100 {
		t.Errorf("only %d built-in rules", len(rules))
	}
}

func TestAlternativesAndLiterals(t *testing.T) {
	tests := []struct {
		expr string
		want string // per branch: =literal or ~needs (comma-separated), joined by " | "
	}{
		{"user unknown|no such user", "=user unknown | =no such user"},
		// Finite sets of strings are expanded and decided by the automaton.
		{"mailbox (is )?full|over ?quota", "=mailbox full,mailbox is full | =overquota,over quota"},
		{"didn'?t pass|[ab]c", "=didnt pass,didn't pass | =ac,bc"},
		// Too many strings (3^6 = 729): left to the expression.
		{"(a|b|c)(d|e|f)(g|h|i)(j|k|l)(m|n|o)(p|q|r)xyz", "~xyz"},
		// A.{0,n}B of two finite sets: decided from where the prefilter
		// found the strings of A and of B, without the expression.
		{`user.{0,20}unknown|\(s3150\)`, "user..20..unknown | =(s3150)"},
		{`(mailbox|inbox).{0,10}(full|over)`, "mailbox,inbox..10..full,over"},
		// Word boundaries at the edges of the sets are checked where the
		// strings occur; parts on either side of the gap may be
		// concatenations.
		{`\bip\b.{0,30}blocked`, `\bip\b..30..blocked`},
		{`(user|mailbox) .{0,30}(does not|doesn'?t) exist`, "user ,mailbox ..30..does not exist,doesnt exist,doesn't exist"},
		{`\bspf\b|\b(is|was) listed (at|by)`, `\bspf\b | \bis listed at,is listed by,was listed at,was listed by`},
		// Anchored at the end, of bounded width: run on the text's last
		// bytes only.
		{`(^|[0-9] )temporary failure\.?$`, "~temporary failure $20"},
		{"(a|b)c|[|]x", "=ac,bc | =|x"},
		// Non-ASCII words are literals too, lower-cased as the text is.
		{"utilisateur inconnu|ÉCHEC|ящик переполнен", "=utilisateur inconnu | =échec | =ящик переполнен"},
		{"boîte (aux lettres )?pleine", "=boîte pleine,boîte aux lettres pleine"},
		{`\S+@\S+ rejected`, "~ rejected"},
	}
	for _, tt := range tests {
		r := Rule{ID: "t", Reason: "user_unknown", Text: tt.expr}
		if err := r.compileText(); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for _, a := range r.alts {
			edge := func(bit uint8) string {
				if a.near.edges&bit != 0 {
					return `\b`
				}
				return ""
			}
			switch {
			case a.near != nil && a.near.then == nil:
				parts = append(parts, edge(firstStart)+strings.Join(a.near.first, ",")+edge(firstEnd))
			case a.near != nil:
				parts = append(parts, fmt.Sprintf("%s%s%s..%d..%s%s%s", edge(firstStart), strings.Join(a.near.first, ","), edge(firstEnd),
					a.near.n, edge(thenStart), strings.Join(a.near.then, ","), edge(thenEnd)))
			case a.re == nil:
				parts = append(parts, "="+strings.Join(a.literals, ","))
			case a.tail != nil:
				parts = append(parts, fmt.Sprintf("~%s $%d", strings.Join(a.needs, ","), a.tailWidth))
			default:
				parts = append(parts, "~"+strings.Join(a.needs, ","))
			}
		}
		if got := strings.Join(parts, " | "); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// The prefilter may only skip a branch that cannot match, and splitting an
// expression into branches must not change what it matches: for every
// corpus text (and splices of them) and every rule, the whole expression
// matches exactly when one of its branches the prefilter marked matches.
func TestPrefilterNeverHidesAMatch(t *testing.T) {
	c := MustNew()
	texts := corpusTexts(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		a, b := texts[rng.IntN(len(texts))], texts[rng.IntN(len(texts))]
		texts = append(texts, a[:rng.IntN(len(a)+1)]+" "+b[rng.IntN(len(b)+1):])
	}
	whole := wholeExpressions(c)
	sc := c.scratch.Get().(*scratch)
	for _, text := range texts {
		checkPrefilter(t, c, sc, whole, text)
	}
}

// FuzzPrefilter: on any text, the prefilter, the literal sets, the windows
// and the required-word checks decide every rule's text as its whole
// expression does.
func FuzzPrefilter(f *testing.F) {
	for _, s := range []string{"550 5.1.1 user unknown", "recipient address rejected: user unknown in local recipient table", "mailbox is full", "ip 1.2.3.4 blocked by spamhaus", "Benutzer hat zuviele Mails", "連絡しようとしたグループ", "temporary failure"} {
		f.Add(s)
	}
	c := MustNew()
	whole := wholeExpressions(c)
	sc := c.scratch.Get().(*scratch)
	f.Fuzz(func(t *testing.T, text string) {
		checkPrefilter(t, c, sc, whole, text)
	})
}

func wholeExpressions(c *Classifier) []*regexp.Regexp {
	whole := make([]*regexp.Regexp, len(c.rules))
	for i, r := range c.rules {
		if r.Text != "" {
			whole[i] = regexp.MustCompile("(?i)" + r.Text)
		}
	}
	return whole
}

func checkPrefilter(t *testing.T, c *Classifier, sc *scratch, whole []*regexp.Regexp, text string) {
	t.Helper()
	lower, wide := normalizeText(nil, text)
	c.prefilter(sc, lower, wide)
	for i, r := range c.rules {
		if whole[i] == nil {
			continue
		}
		want := whole[i].Match(lower)
		got := false
		for k := c.ruleAlts[i][0]; k < c.ruleAlts[i][1]; k++ {
			if sc.marked(k) && c.branchMatches(k, sc, lower) {
				got = true
			}
		}
		if got != want {
			t.Fatalf("rule %s on %q: branches say %v, whole expression says %v", r.ID, lower, got, want)
		}
	}
}

// Near branches (A.{0,n}B, with or without word boundaries) decided from
// literal occurrences, and branches anchored at the end run on the text's
// last bytes, agree with their expressions on texts made of their words,
// fillers and multi-byte characters at every distance.
func TestNearBranchesAgreeWithExpressions(t *testing.T) {
	c := MustNew()
	whole := wholeExpressions(c)
	sc := c.scratch.Get().(*scratch)
	pieces := []string{"server", "serveur", "bezet", "occupé", "服务器", "正忙", "temporär", "fehler", "erreur", "temporaire",
		"täglichen", "limit", "1 日の", "制限", "domaine", "non inscrit", "收件人", "太多", "x", "日", "é", " ", "  ", "\xff", "abcdefghij",
		// near branches with word boundaries, and branches anchored at the end
		"ip", "blocked", "spf", "_", "1", "was listed by", "user ", "does not exist", "temporary failure", "message rejected", ".", "4 "}
	rng := rand.New(rand.NewPCG(9, 10))
	near := 0
	for _, alt := range c.alts {
		if alt.near != nil {
			near++
		}
	}
	if near == 0 {
		t.Fatal("no near branch in the built-in rules")
	}
	// Texts ending in the anchored branches' words, at every length
	// around their width, with and without what may precede them.
	for _, words := range []string{"temporary failure", "message rejected", "recipient temporarily unavailable"} {
		for _, before := range []string{"", "x", "4 ", "a4 ", "14 ", "x 4 ", "_4 ", "é4 ", "a long reply that says 4 "} {
			for _, after := range []string{"", ".", "..", " x", "x"} {
				checkPrefilter(t, c, sc, whole, before+words+after)
			}
		}
	}
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for j := rng.IntN(12); j > 0; j-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		checkPrefilter(t, c, sc, whole, b.String())
	}
}
