package enrich

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// MaxTextBytes bounds how much of a diagnostic text is examined. Replies
// that matter say so early; the bound keeps a hostile 10 MB reason cheap.
const MaxTextBytes = 8 << 10

// Input is one bounce as SendGrid's events carry it.
type Input struct {
	// Event is "bounce" (the default when empty) or "deferred"; a deferral
	// is always soft. "blocked" is accepted as an event name too and means
	// a bounce of type blocked.
	Event string `json:"event"`
	// Type is SendGrid's bounce type, "bounce" or "blocked": a hint that
	// rules may use; the text's meaning decides.
	Type string `json:"type"`
	// Reason is the SMTP reply of a bounce; Response that of a deferral.
	// The first non-empty one is classified.
	Reason   string `json:"reason"`
	Response string `json:"response"`
	// Status is the enhanced status code (RFC 3463), optional.
	Status string `json:"status"`
	// Email is the recipient; its domain selects provider rules.
	Email string `json:"email"`
}

// Result is the classification of one bounce.
type Result struct {
	BounceType     BounceType     `json:"bounce_type"`
	Classification Classification `json:"bounce_classification"`
	Reason         Reason         `json:"reason_code"`
	// Rule is the id of the rule that decided.
	Rule string `json:"rule"`
	// ReplyCode and Status are the codes the decision used: parsed from the
	// text, or from Input.Status when the text has none more specific.
	ReplyCode uint16     `json:"reply_code,omitempty"`
	Status    StatusCode `json:"status,omitzero"`
	// Provider is the mailbox provider, when known.
	Provider string `json:"provider,omitempty"`
}

// MarshalText writes the code as "5.1.1".
func (s StatusCode) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Rule ids the classifier reports when no rule of a file decided.
const (
	RuleNoMatch = "default.unclassified"
)

// ErrNotBounce is returned for an event that is neither a bounce nor a
// deferral.
var ErrNotBounce = errors.New("not a bounce: event must be bounce, blocked or deferred")

// Classifier classifies bounces with an ordered list of rules: the first
// rule whose conditions all hold decides. It is safe for concurrent use.
//
// A prefilter (Aho-Corasick over the literal strings every rule's
// expression needs) narrows the rules worth trying, so the cost grows with
// what the text contains, not with the number of rules.
type Classifier struct {
	rules []Rule
	// ruleAlts[i] is the range [lo, hi) of rule i's branches in alts.
	ruleAlts [][2]int
	alts     []*alternative
	// alwaysRules and alwaysAlts mark what is tried whatever the text
	// holds: rules without an expression, branches without a literal.
	alwaysRules []uint64
	alwaysAlts  []uint64
	lits        *literalSet
	// patternAlts[p] lists the branches (with their rules) needing literal
	// p; patternProvider gives the provider a marker literal names.
	patternAlts     [][]altRef
	patternProvider []string
	scratch         sync.Pool
}

type altRef struct{ rule, alt int }

type scratch struct {
	text  []byte
	rules []uint64
	alts  []uint64
}

// New builds a classifier from the built-in rules, after the operator rules
// given (tried first). An operator rule with the id of a built-in replaces
// it.
func New(operator ...Rule) (*Classifier, error) {
	builtin, err := BuiltinRules()
	if err != nil {
		return nil, err
	}
	override := make(map[string]bool, len(operator))
	for _, r := range operator {
		if override[r.ID] {
			return nil, &RulesError{Source: r.Source, Line: r.Line, Err: fmt.Errorf("rule id %q is defined twice", r.ID)}
		}
		override[r.ID] = true
	}
	rules := append([]Rule(nil), operator...)
	for _, r := range builtin {
		if !override[r.ID] {
			rules = append(rules, r)
		}
	}
	return compile(rules)
}

// MustNew is New for callers (tests, examples) that cannot recover.
func MustNew(operator ...Rule) *Classifier {
	c, err := New(operator...)
	if err != nil {
		panic(err)
	}
	return c
}

// BuiltinRules returns the embedded rules in order.
func BuiltinRules() ([]Rule, error) {
	return ParseRules(bytes.NewReader(builtinRules), "builtin rules.txt")
}

// Rules returns the rules in evaluation order.
func (c *Classifier) Rules() []Rule { return c.rules }

func compile(rules []Rule) (*Classifier, error) {
	c := &Classifier{rules: rules, ruleAlts: make([][2]int, len(rules))}
	for i := range rules {
		lo := len(c.alts)
		for k := range rules[i].alts {
			c.alts = append(c.alts, &rules[i].alts[k])
		}
		c.ruleAlts[i] = [2]int{lo, len(c.alts)}
	}
	c.alwaysRules = make([]uint64, words(len(rules)))
	c.alwaysAlts = make([]uint64, words(len(c.alts)))

	index := map[string]int{}
	var patterns []string
	add := func(lit string) int {
		if p, ok := index[lit]; ok {
			return p
		}
		index[lit] = len(patterns)
		patterns = append(patterns, lit)
		c.patternAlts = append(c.patternAlts, nil)
		c.patternProvider = append(c.patternProvider, "")
		return len(patterns) - 1
	}
	for _, m := range providerMarkers {
		p := add(m.marker)
		if c.patternProvider[p] == "" {
			c.patternProvider[p] = m.provider
		}
	}
	for i := range rules {
		lo, hi := c.ruleAlts[i][0], c.ruleAlts[i][1]
		if lo == hi {
			setBit(c.alwaysRules, i)
		}
		for k := lo; k < hi; k++ {
			alt := c.alts[k]
			needs := alt.needs
			if alt.literal != "" {
				needs = []string{alt.literal}
			}
			if needs == nil {
				setBit(c.alwaysRules, i)
				setBit(c.alwaysAlts, k)
				continue
			}
			for _, lit := range needs {
				p := add(lit)
				c.patternAlts[p] = append(c.patternAlts[p], altRef{i, k})
			}
		}
	}
	c.lits = newLiteralSet(patterns)
	c.scratch.New = func() any {
		return &scratch{rules: make([]uint64, len(c.alwaysRules)), alts: make([]uint64, len(c.alwaysAlts))}
	}
	return c, nil
}

func words(n int) int                 { return (n + 63) / 64 }
func setBit(set []uint64, i int)      { set[i/64] |= 1 << (i % 64) }
func hasBit(set []uint64, i int) bool { return set[i/64]&(1<<(i%64)) != 0 }

// Classify classifies one bounce.
func (c *Classifier) Classify(in Input) (Result, error) {
	event := in.Event
	typ := in.Type
	switch event {
	case "", "bounce":
		event = "bounce"
	case "blocked":
		event, typ = "bounce", "blocked"
	case "deferred":
	default:
		return Result{}, fmt.Errorf("%w (got %q)", ErrNotBounce, in.Event)
	}
	text := in.Reason
	if text == "" {
		text = in.Response
	}
	if len(text) > MaxTextBytes {
		text = text[:MaxTextBytes]
	}

	sc := c.scratch.Get().(*scratch)
	defer c.scratch.Put(sc)
	sc.text = normalize(sc.text[:0], text)
	lower := sc.text

	reply, status := findCodes(lower)
	if given, ok := ParseStatus(in.Status); ok && (status.IsZero() || !given.Generic()) {
		// A specific status field stands; a generic one (5.0.0) yields to
		// a specific code inside the text.
		status = given
	}

	copy(sc.rules, c.alwaysRules)
	copy(sc.alts, c.alwaysAlts)
	provider := ProviderForDomain(DomainOf(in.Email))
	markerProvider := ""
	c.lits.scan(lower, func(p int32) {
		for _, ref := range c.patternAlts[p] {
			setBit(sc.rules, ref.rule)
			setBit(sc.alts, ref.alt)
		}
		if markerProvider == "" {
			markerProvider = c.patternProvider[p]
		}
	})
	if provider == "" {
		provider = markerProvider
	}

	res := Result{ReplyCode: reply, Status: status, Provider: provider}
	res.Reason, res.Rule = "unclassified", RuleNoMatch
	for w, word := range sc.rules {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if c.matches(i, sc.alts, lower, reply, status, provider, typ, event) {
				r := &c.rules[i]
				res.Reason, res.Rule = r.Reason, r.ID
				goto decided
			}
		}
	}
decided:
	info, _ := LookupReason(res.Reason)
	res.Classification = info.Class
	res.BounceType = Soft
	if info.MayBeHard && event != "deferred" && codeClass(reply, status) != 4 {
		res.BounceType = Hard
	}
	return res, nil
}

// codeClass is the reply code's class, or the status code's when the text
// has no reply code; 0 when neither is known.
func codeClass(reply uint16, status StatusCode) int {
	if reply != 0 {
		return int(reply / 100)
	}
	return int(status.Class)
}

// matches checks candidate rule i. Of its branches, only those whose
// literal the prefilter found (set in alts) can match; a plain-string
// branch found there matches without running an expression.
func (c *Classifier) matches(i int, alts []uint64, text []byte, reply uint16, status StatusCode, provider, typ, event string) bool {
	r := &c.rules[i]
	if len(r.Providers) > 0 && !contains(r.Providers, provider) {
		return false
	}
	if len(r.Types) > 0 && !contains(r.Types, typ) {
		return false
	}
	if len(r.Events) > 0 && !contains(r.Events, event) {
		return false
	}
	if len(r.Status) > 0 {
		ok := false
		for _, p := range r.Status {
			if p.match(status) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.Reply) > 0 {
		ok := false
		for _, p := range r.Reply {
			if p.match(reply, status) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	lo, hi := c.ruleAlts[i][0], c.ruleAlts[i][1]
	if lo == hi {
		return true // no text condition
	}
	for k := lo; k < hi; k++ {
		if !hasBit(alts, k) {
			continue
		}
		if alt := c.alts[k]; alt.re == nil || alt.re.Match(text) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
