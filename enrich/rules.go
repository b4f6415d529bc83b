package enrich

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
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
	// literal is set when the branch is a plain string: it matches exactly
	// when the prefilter finds it, and re is nil.
	literal string
	re      *regexp.Regexp
	// needs: every match of re contains one of these lower-case strings;
	// nil when none could be derived (the branch is always tried).
	needs []string
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
		return alternative{literal: lit}, nil
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
	needs, _ := requiredLiterals(parsed.Simplify())
	for _, l := range needs {
		if len(l) < 2 {
			needs = nil
			break
		}
	}
	return alternative{re: re, needs: needs}, nil
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
		case c >= utf8.RuneSelf:
			return "", false // matched by the regexp, to fold case properly
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
// matches exactly the texts containing one of them. Literals are lower-case
// ASCII; anything else gives up (nil), which only costs speed.
func requiredLiterals(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				return nil, false
			}
		}
		// Text is matched with white space folded to single spaces, so a
		// literal that holds other white space cannot be searched as is.
		if strings.ContainsAny(s, "\t\n\r\f\v") || strings.Contains(s, "  ") {
			return nil, false
		}
		return []string{strings.ToLower(s)}, true
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

// normalize appends text to dst lower-cased (ASCII) with runs of white
// space folded to one space and surrounding space trimmed.
func normalize(dst []byte, text string) []byte {
	space := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch c {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			space = true
			continue
		}
		if space && len(dst) > 0 {
			dst = append(dst, ' ')
		}
		space = false
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, c) // invalid UTF-8 passes through as is
				continue
			}
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
			i += size - 1
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
