package enrich

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/coregx/ahocorasick"
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
	// always marks rules to try whatever the text holds (no expression, or
	// none with a known literal).
	always []uint64
	ac     *ahocorasick.Automaton
	// patternRules[p] lists the rules needing literal p; patternProvider
	// gives the provider a marker literal names ("" for rule literals).
	patternRules    [][]int
	patternProvider []string
	scratch         sync.Pool
}

type scratch struct {
	text []byte
	cand []uint64
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
	c := &Classifier{rules: rules, always: make([]uint64, (len(rules)+63)/64)}
	index := map[string]int{}
	var patterns []string
	add := func(lit string) int {
		if p, ok := index[lit]; ok {
			return p
		}
		index[lit] = len(patterns)
		patterns = append(patterns, lit)
		c.patternRules = append(c.patternRules, nil)
		c.patternProvider = append(c.patternProvider, "")
		return len(patterns) - 1
	}
	for _, m := range providerMarkers {
		p := add(m.marker)
		if c.patternProvider[p] == "" {
			c.patternProvider[p] = m.provider
		}
	}
	for i, r := range rules {
		if r.re == nil || r.literals == nil {
			c.always[i/64] |= 1 << (i % 64)
			continue
		}
		for _, lit := range r.literals {
			p := add(lit)
			c.patternRules[p] = append(c.patternRules[p], i)
		}
	}
	ac, err := ahocorasick.NewBuilder().AddStrings(patterns).Build()
	if err != nil {
		return nil, fmt.Errorf("build prefilter: %w", err)
	}
	c.ac = ac
	c.scratch.New = func() any { return &scratch{cand: make([]uint64, len(c.always))} }
	return c, nil
}

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

	copy(sc.cand, c.always)
	provider := ProviderForDomain(DomainOf(in.Email))
	markerProvider := ""
	for _, m := range c.ac.FindAllOverlapping(lower) {
		for _, r := range c.patternRules[m.PatternID] {
			sc.cand[r/64] |= 1 << (r % 64)
		}
		if markerProvider == "" {
			markerProvider = c.patternProvider[m.PatternID]
		}
	}
	if provider == "" {
		provider = markerProvider
	}

	res := Result{ReplyCode: reply, Status: status, Provider: provider}
	res.Reason, res.Rule = "unclassified", RuleNoMatch
	for w, word := range sc.cand {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			r := &c.rules[i]
			if r.matches(lower, reply, status, provider, typ, event) {
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

// matches checks a candidate rule; the prefilter has already accepted its
// literals (an exact rule needs nothing more).
func (r *Rule) matches(text []byte, reply uint16, status StatusCode, provider, typ, event string) bool {
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
	if r.re != nil && !r.exact {
		return r.re.Match(text)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
