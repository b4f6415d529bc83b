package enrich

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// builtinRules is the rules file compiled into every classifier. Its format
// is documented at its top and in docs/classification.md.
//
//go:embed rules.txt
var builtinRules []byte

// Rule is one line of a rules file: conditions on the bounce and the reason
// it yields when they all hold.
type Rule struct {
	// ID is stable across releases unless the rule's meaning changes; it is
	// reported with every classification.
	ID     string
	Reason Reason
	// Conditions. An empty list accepts anything.
	Providers []string
	Status    []statusPattern
	Reply     []replyPattern
	Types     []string // SendGrid bounce type: bounce, blocked
	Events    []string // bounce, deferred
	// Text is an RE2 expression matched case-insensitively against the
	// diagnostic text with runs of white space folded to one space.
	Text string
	// Source and Line say where the rule was defined.
	Source string
	Line   int

	// alts are the top-level alternatives of Text; the rule's text
	// condition holds when any of them matches.
	alts []alternative
}

// alternative is one top-level branch of a rule's expression.
type alternative struct {
	// literals is set when the branch matches a finite set of strings (a
	// plain string, or alternatives and optional parts of plain strings):
	// it matches exactly when the prefilter finds one of them, and re is
	// nil.
	literals []string
	re       *regexp.Regexp
	// needs: every match of re contains one of these lower-case strings;
	// nil when none could be derived (the branch is always tried).
	needs []string
	// more lists further sets of which one string must also occur (one
	// per other factor of a concatenation: "recipient.{0,30}refuses"
	// needs "recipient" and "refuses"), checked in the match window
	// before re runs.
	more [][][]byte
	// near is set when the branch is two finite sets of strings at most
	// a number of characters apart (A.{0,n}B), or one finite set, either
	// with word boundaries (\b) at their edges: the classifier decides it
	// from the literal occurrences the prefilter found, without re.
	near *nearBranch
	// tail is set when the branch is anchored at the end of the text
	// ($) and its other parts have a bounded width, tailWidth: every match
	// lies in the last tailWidth bytes, so on a longer text tail (re with
	// ^ made unmatchable, as it cannot match there) runs on those bytes
	// only.
	tail      *regexp.Regexp
	tailWidth int
	// width bounds the length in bytes of any match of re; -1 when it is
	// unbounded or the branch is anchored (^, $), so the branch must see
	// the whole text.
	width int
}

// statusPattern matches an enhanced status code; -1 is a wildcard.
type statusPattern struct {
	class, subject     int
	detailLo, detailHi int
}

func (p statusPattern) match(s StatusCode) bool {
	if s.IsZero() {
		return false
	}
	if p.class >= 0 && int(s.Class) != p.class {
		return false
	}
	if p.subject >= 0 && int(s.Subject) != p.subject {
		return false
	}
	if p.detailLo >= 0 && (int(s.Detail) < p.detailLo || int(s.Detail) > p.detailHi) {
		return false
	}
	return true
}

// replyPattern matches a reply code: three characters, digits or 'x'.
type replyPattern [3]byte

func (p replyPattern) match(code uint16, status StatusCode) bool {
	if code == 0 {
		// No reply code in the text: a class-only pattern (5xx) may still
		// match the status code's class.
		return p[1] == 'x' && p[2] == 'x' && !status.IsZero() && byte('0'+status.Class) == p[0]
	}
	d := [3]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)}
	for i := range p {
		if p[i] != 'x' && p[i] != d[i] {
			return false
		}
	}
	return true
}

// RulesError reports a problem in a rules file, naming the line.
type RulesError struct {
	Source string
	Line   int
	Err    error
}

func (e *RulesError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.Source, e.Line, e.Err)
}

func (e *RulesError) Unwrap() error { return e.Err }

// ParseRulesFile reads an operator's rules file.
func ParseRulesFile(path string) ([]Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open rules file: %w", err)
	}
	defer f.Close()
	return ParseRules(f, path)
}

// ParseRules reads rules in the rules-file format; source names the input in
// errors. Each non-blank line that does not start with '#' is one rule:
//
//	ID REASON [key=value ...] [text: RE2 EXPRESSION]
//
// Keys: provider=a,b  status=5.1.1,x.2.x,5.7.606-649  reply=550,4xx
// type=bounce|blocked  event=bounce|deferred. Everything after "text:" to
// the end of the line is the expression.
func ParseRules(r io.Reader, source string) ([]Rule, error) {
	var rules []Rule
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fail := func(format string, args ...any) error {
			return &RulesError{Source: source, Line: line, Err: fmt.Errorf(format, args...)}
		}
		if !utf8.ValidString(text) {
			return nil, fail("not valid UTF-8")
		}
		rule, err := parseRuleLine(text)
		if err != nil {
			return nil, fail("%v", err)
		}
		if prev, dup := seen[rule.ID]; dup {
			return nil, fail("rule id %q is already defined on line %d", rule.ID, prev)
		}
		seen[rule.ID] = line
		rule.Source, rule.Line = source, line
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, &RulesError{Source: source, Line: line + 1, Err: err}
	}
	return rules, nil
}

var ruleIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.\-]*$`)

func parseRuleLine(line string) (Rule, error) {
	var rule Rule
	head := line
	if i := strings.Index(line, "text:"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
		head = line[:i]
		rule.Text = strings.TrimSpace(line[i+len("text:"):])
		if rule.Text == "" {
			return rule, fmt.Errorf("empty expression after text:")
		}
	}
	fields := strings.Fields(head)
	if len(fields) < 2 {
		return rule, fmt.Errorf("want \"ID REASON [key=value ...] [text: EXPRESSION]\", got %q", line)
	}
	rule.ID = fields[0]
	if !ruleIDPattern.MatchString(rule.ID) {
		return rule, fmt.Errorf("rule id %q: use lower-case letters, digits, '.', '_' and '-'", rule.ID)
	}
	rule.Reason = Reason(fields[1])
	if _, ok := LookupReason(rule.Reason); !ok {
		return rule, fmt.Errorf("unknown reason %q (see `bouncer classify --reasons`)", fields[1])
	}
	for _, f := range fields[2:] {
		key, value, ok := strings.Cut(f, "=")
		if !ok || value == "" {
			return rule, fmt.Errorf("condition %q: want key=value", f)
		}
		values := strings.Split(value, ",")
		switch key {
		case "provider":
			rule.Providers = values
		case "status":
			for _, v := range values {
				p, err := parseStatusPattern(v)
				if err != nil {
					return rule, err
				}
				rule.Status = append(rule.Status, p)
			}
		case "reply":
			for _, v := range values {
				if len(v) != 3 || (v[0] != '2' && v[0] != '4' && v[0] != '5') ||
					!(isDigit(v[1]) || v[1] == 'x') || !(isDigit(v[2]) || v[2] == 'x') {
					return rule, fmt.Errorf("reply %q: want a code like 550 or 55x or 4xx", v)
				}
				rule.Reply = append(rule.Reply, replyPattern{v[0], v[1], v[2]})
			}
		case "type":
			for _, v := range values {
				if v != "bounce" && v != "blocked" {
					return rule, fmt.Errorf("type %q: want bounce or blocked", v)
				}
			}
			rule.Types = values
		case "event":
			for _, v := range values {
				if v != "bounce" && v != "deferred" {
					return rule, fmt.Errorf("event %q: want bounce or deferred", v)
				}
			}
			rule.Events = values
		default:
			return rule, fmt.Errorf("unknown key %q (want provider, status, reply, type, event or text:)", key)
		}
	}
	if rule.Text == "" && len(rule.Status) == 0 && len(rule.Reply) == 0 && len(rule.Types) == 0 && len(rule.Events) == 0 {
		return rule, fmt.Errorf("rule %s has no condition and would match every bounce", rule.ID)
	}
	if rule.Text != "" {
		if err := rule.compileText(); err != nil {
			return rule, err
		}
	}
	return rule, nil
}

func parseStatusPattern(v string) (statusPattern, error) {
	bad := fmt.Errorf("status %q: want a code like 5.1.1, x.2.x or 5.7.606-649", v)
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return statusPattern{}, bad
	}
	num := func(s string, max int) (int, bool) {
		if s == "x" {
			return -1, true
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= 0 && n <= max && s[0] != '+'
	}
	p := statusPattern{}
	var ok bool
	if p.class, ok = num(parts[0], 5); !ok || (p.class != -1 && p.class != 2 && p.class != 4 && p.class != 5) {
		return p, bad
	}
	if p.subject, ok = num(parts[1], 999); !ok {
		return p, bad
	}
	lo, hi, isRange := strings.Cut(parts[2], "-")
	if p.detailLo, ok = num(lo, 999); !ok {
		return p, bad
	}
	p.detailHi = p.detailLo
	if isRange {
		if p.detailHi, ok = num(hi, 999); !ok || p.detailLo < 0 || p.detailHi < p.detailLo {
			return p, bad
		}
	}
	return p, nil
}

func (r *Rule) compileText() error {
	// Check the whole expression first, for an error message that shows it.
	if _, err := regexp.Compile(r.Text); err != nil {
		return fmt.Errorf("text expression: %v", err)
	}
	r.alts = nil
	for _, branch := range splitAlternatives(r.Text) {
		alt, err := compileAlternative(branch)
		if err != nil {
			return fmt.Errorf("text expression, branch %q: %v", branch, err)
		}
		r.alts = append(r.alts, alt)
	}
	return nil
}

func compileAlternative(branch string) (alternative, error) {
	if lit, ok := plainLiteral(branch); ok && len(lit) >= 2 {
		return alternative{literals: []string{lit}}, nil
	}
	// The text is lower-cased before matching, so an expression without
	// upper-case letters needs no case folding (which is slow); one with
	// them (\S, \W, or capitals) is compiled case-insensitive.
	expr := branch
	if strings.ToLower(expr) != expr {
		expr = "(?i)" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return alternative{}, err
	}
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return alternative{}, err
	}
	if lits, ok := expandLiterals(parsed, maxExpansion); ok {
		return alternative{literals: lits}, nil
	}
	if n, ok := nearLiterals(parsed); ok {
		// The prefilter marks the branch when it finds a string of the set
		// whose shortest string is the longest (the rarer one, usually).
		needs := n.first
		if n.then != nil && shortest(n.then) > shortest(n.first) {
			needs = n.then
		}
		return alternative{re: re, near: n, needs: needs}, nil
	}
	simple := parsed.Simplify()
	needs, _ := requiredLiterals(simple)
	if hasShort(needs) {
		needs = nil
	}
	var more [][][]byte
	if needs != nil {
		for _, g := range requiredGroups(simple) {
			if slices.Equal(g, needs) {
				continue
			}
			set := make([][]byte, len(g))
			for i, lit := range g {
				set[i] = []byte(lit)
			}
			more = append(more, set)
		}
	}
	alt := alternative{re: re, needs: needs, more: more, width: maxWidth(parsed)}
	if tail, w, ok := tailExpression(parsed); ok {
		alt.tail, alt.tailWidth = tail, w
	}
	return alt, nil
}

// tailExpression recognises an expression X$ where X has a bounded width w
// (^ allowed, no other anchor): it returns X$ with every ^ replaced by
// "no match", for running on the last bytes of a text longer than w (where
// a match of X cannot start at the beginning of the text).
func tailExpression(re *syntax.Regexp) (*regexp.Regexp, int, bool) {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[len(re.Sub)-1].Op != syntax.OpEndText {
		return nil, 0, false
	}
	body := &syntax.Regexp{Op: syntax.OpConcat, Flags: re.Flags, Sub: re.Sub[:len(re.Sub)-1]}
	body = withoutBeginText(body)
	w := maxWidth(body)
	if w < 0 {
		return nil, 0, false // unbounded, or another anchor
	}
	tail, err := regexp.Compile(body.String() + `$`)
	if err != nil {
		return nil, 0, false
	}
	return tail, w, true
}

// withoutBeginText returns a copy of re with every ^ (begin of text)
// replaced by an expression that matches nothing.
func withoutBeginText(re *syntax.Regexp) *syntax.Regexp {
	if re.Op == syntax.OpBeginText {
		return &syntax.Regexp{Op: syntax.OpNoMatch, Flags: re.Flags}
	}
	out := *re
	out.Sub = nil
	for _, sub := range re.Sub {
		out.Sub = append(out.Sub, withoutBeginText(sub))
	}
	return &out
}

func shortest(set []string) int {
	n := len(set[0])
	for _, s := range set[1:] {
		n = min(n, len(s))
	}
	return n
}

func hasShort(lits []string) bool {
	for _, l := range lits {
		if len(l) < 2 {
			return true
		}
	}
	return false
}

// requiredGroups returns, for a concatenation, the literal set each factor
// requires (every match holds one string of every set).
func requiredGroups(re *syntax.Regexp) [][]string {
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpConcat {
		return nil
	}
	var groups [][]string
	for _, sub := range re.Sub {
		if lits, _ := requiredLiterals(sub); lits != nil && !hasShort(lits) {
			groups = append(groups, lits)
		}
	}
	return groups
}

// nearBranch is a branch of the form A.{0,n}B where A and B match finite
// sets of strings: it matches when a string of first ends at most n
// characters before a string of then starts (see nearLiterals). When then
// is nil, the branch is A alone: it matches when a string of first occurs.
// edges says where a word boundary (\b) must hold: before or after a
// string of first, before or after one of then.
type nearBranch struct {
	first, then []string
	n           int
	edges       uint8
}

// Word boundaries a near branch requires (nearBranch.edges).
const (
	firstStart uint8 = 1 << iota
	firstEnd
	thenStart
	thenEnd
)

// nearLiterals recognises A.{0,n}B, A and B each a finite set of strings
// of at least two bytes, possibly with \b at their edges: such a branch
// matches exactly when a string of A occurs (with the word boundaries
// asked for around it) and a string of B (likewise) starts at most n
// characters (runes other than a line break) after it ends. It also
// recognises A alone with \b at an edge (\bspf\b), which matches when
// a string of A occurs with those boundaries.
func nearLiterals(re *syntax.Regexp) (*nearBranch, bool) {
	if re.Op != syntax.OpConcat {
		return nil, false
	}
	subs := re.Sub
	gap := -1
	for i, sub := range subs {
		if sub.Op == syntax.OpRepeat && sub.Min == 0 && sub.Max >= 0 && sub.Sub[0].Op == syntax.OpAnyCharNotNL {
			if gap >= 0 {
				return nil, false // two gaps
			}
			gap = i
		}
	}
	var n nearBranch
	var ok bool
	if gap < 0 {
		var start, end bool
		subs, start, end = trimBoundaries(subs)
		if !start && !end {
			return nil, false // a plain set: the automaton decides it
		}
		if n.first, ok = expandConcat(subs, re.Flags); !ok {
			return nil, false
		}
		n.edges = edgeBits(start, firstStart) | edgeBits(end, firstEnd)
		return &n, true
	}
	a, aStart, aEnd := trimBoundaries(subs[:gap])
	b, bStart, bEnd := trimBoundaries(subs[gap+1:])
	if n.first, ok = expandConcat(a, re.Flags); !ok {
		return nil, false
	}
	if n.then, ok = expandConcat(b, re.Flags); !ok {
		return nil, false
	}
	n.n = subs[gap].Max
	n.edges = edgeBits(aStart, firstStart) | edgeBits(aEnd, firstEnd) | edgeBits(bStart, thenStart) | edgeBits(bEnd, thenEnd)
	return &n, true
}

// trimBoundaries removes one \b from each end of subs, saying which ends
// had one.
func trimBoundaries(subs []*syntax.Regexp) (rest []*syntax.Regexp, start, end bool) {
	if len(subs) > 0 && subs[0].Op == syntax.OpWordBoundary {
		subs, start = subs[1:], true
	}
	if len(subs) > 0 && subs[len(subs)-1].Op == syntax.OpWordBoundary {
		subs, end = subs[:len(subs)-1], true
	}
	return subs, start, end
}

func edgeBits(set bool, bit uint8) uint8 {
	if set {
		return bit
	}
	return 0
}

// expandConcat is expandLiterals of the concatenation of subs.
func expandConcat(subs []*syntax.Regexp, flags syntax.Flags) ([]string, bool) {
	if len(subs) == 0 {
		return nil, false
	}
	if len(subs) == 1 {
		return expandLiterals(subs[0], maxExpansion)
	}
	return expandLiterals(&syntax.Regexp{Op: syntax.OpConcat, Flags: flags, Sub: subs}, maxExpansion)
}

// maxExpansion bounds how many strings a branch may expand to before it is
// left to the regular expression engine.
const maxExpansion = 256

// expandLiterals returns the finite set of strings re matches, lower-cased,
// when re is made of literals, alternation, optional parts, captures and
// small character classes only, and the set has at most limit strings of at
// least two bytes. A text then contains a match exactly when it contains one
// of the strings, which the literal automaton decides without running re.
// Strings holding white space other than single spaces can never occur in
// normalized text and are dropped.
func expandLiterals(re *syntax.Regexp, limit int) ([]string, bool) {
	set, ok := expand(re, limit)
	if !ok {
		return nil, false
	}
	var out []string
	for _, s := range set {
		if len(s) < 2 {
			return nil, false // too short to prefilter on
		}
		if strings.ContainsAny(s, "\t\n\r\f\v") || strings.Contains(s, "  ") {
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, false
	}
	return out, true
}

func expand(re *syntax.Regexp, limit int) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{strings.ToLower(string(re.Rune))}, true
	case syntax.OpCharClass:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		var out []string
		for i := 0; i < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= limit || unicode.ToLower(r) != r {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, true
	case syntax.OpCapture:
		return expand(re.Sub[0], limit)
	case syntax.OpQuest:
		sub, ok := expand(re.Sub[0], limit-1)
		if !ok {
			return nil, false
		}
		return append([]string{""}, sub...), true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := expand(sub, limit-len(out))
			if !ok {
				return nil, false
			}
			out = append(out, set...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := expand(sub, limit)
			if !ok || len(out)*len(set) > limit {
				return nil, false
			}
			next := make([]string, 0, len(out)*len(set))
			for _, a := range out {
				for _, b := range set {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// maxWidth returns the most bytes a match of re can span, or -1 when that is
// unbounded or re is anchored to the start or end of the text or a line.
func maxWidth(re *syntax.Regexp) int {
	runeBytes := func(r rune, fold bool) int {
		if fold || r >= utf8.RuneSelf {
			return utf8.UTFMax // a case variant may be longer
		}
		return 1
	}
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpNoMatch:
		return 0
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += runeBytes(r, re.Flags&syntax.FoldCase != 0)
		}
		return n
	case syntax.OpCharClass:
		for i := 0; i < len(re.Rune); i += 2 {
			if re.Rune[i+1] >= utf8.RuneSelf {
				return utf8.UTFMax
			}
		}
		if re.Flags&syntax.FoldCase != 0 {
			return utf8.UTFMax
		}
		return 1
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return utf8.UTFMax
	case syntax.OpCapture, syntax.OpQuest:
		return maxWidth(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		total := 0
		for _, sub := range re.Sub {
			w := maxWidth(sub)
			if w < 0 {
				return -1
			}
			if re.Op == syntax.OpConcat {
				total += w
			} else {
				total = max(total, w)
			}
		}
		return total
	case syntax.OpRepeat:
		w := maxWidth(re.Sub[0])
		if w < 0 || re.Max < 0 {
			return -1
		}
		return w * re.Max
	}
	return -1 // star, plus, anchors
}

// splitAlternatives splits an expression at its top-level '|'.
func splitAlternatives(expr string) []string {
	var out []string
	depth, inClass, start := 0, false, 0
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(expr) && expr[i+1] == ']' {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			out = append(out, expr[start:i])
			start = i + 1
		}
	}
	return append(out, expr[start:])
}

// plainLiteral returns the string a branch matches when it has no regular
// expression syntax beyond escaped punctuation, lower-cased.
func plainLiteral(branch string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(branch); i++ {
		c := branch[i]
		switch {
		case c == '\\':
			if i+1 >= len(branch) || isAlnum(branch[i+1]) || branch[i+1] >= utf8.RuneSelf {
				return "", false // \b, \s, \d, \pL ...
			}
			i++
			b.WriteByte(branch[i])
		case strings.IndexByte(".+*?()|[]{}^$", c) >= 0:
			return "", false
		case c == '\t' || c == '\n' || c == '\r':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	lit := strings.ToLower(b.String())
	if strings.Contains(lit, "  ") || strings.TrimSpace(lit) != lit && strings.TrimSpace(lit) == "" {
		return "", false
	}
	return lit, true
}

// requiredLiterals returns strings of which at least one occurs in every
// text that re matches (nil when no such set is known), and whether re
// matches exactly the texts containing one of them. Literals are
// lower-cased as normalize lower-cases the text; when none can be derived
// the result is nil, which only costs speed.
func requiredLiterals(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		// The text is lower-cased rune by rune (normalize), so is the
		// literal; non-ASCII literals go to the second automaton.
		s := strings.ToLower(string(re.Rune))
		// Text is matched with white space folded to single spaces, so a
		// literal that holds other white space cannot be searched as is.
		if strings.ContainsAny(s, "\t\n\r\f\v") || strings.Contains(s, "  ") {
			return nil, false
		}
		return []string{s}, true
	case syntax.OpCapture:
		return requiredLiterals(re.Sub[0])
	case syntax.OpAlternate:
		var all []string
		exact := true
		for _, sub := range re.Sub {
			lits, ex := requiredLiterals(sub)
			if lits == nil {
				return nil, false
			}
			all = append(all, lits...)
			exact = exact && ex
		}
		return all, exact
	case syntax.OpConcat:
		var best []string
		bestLen := 0
		for _, sub := range re.Sub {
			lits, _ := requiredLiterals(sub)
			if lits == nil {
				continue
			}
			shortest := len(lits[0])
			for _, l := range lits[1:] {
				shortest = min(shortest, len(l))
			}
			if shortest > bestLen {
				best, bestLen = lits, shortest
			}
		}
		return best, false
	case syntax.OpPlus:
		lits, _ := requiredLiterals(re.Sub[0])
		return lits, false
	case syntax.OpRepeat:
		if re.Min >= 1 {
			lits, _ := requiredLiterals(re.Sub[0])
			return lits, false
		}
	}
	return nil, false
}
