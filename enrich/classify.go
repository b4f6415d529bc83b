package enrich

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"unicode/utf8"
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
	// DecidedBy says what decided: DecidedByText (a rule with a text
	// condition matched the reply text), DecidedByCode (a rule on the
	// reply or status code alone) or DecidedByNone (no rule: Unclassified).
	// Texts not decided by a text rule are what `bouncer classify
	// --unmatched` reports: the ones no rule understood.
	DecidedBy string `json:"decided_by"`
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

// What decided a classification (Result.DecidedBy).
const (
	DecidedByText = "text"
	DecidedByCode = "code"
	DecidedByNone = "none"
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
	// holds: rules without an expression, branches without a literal;
	// alwaysAltList lists the latter.
	alwaysRules   []uint64
	alwaysAlts    []uint64
	alwaysAltList []int32
	// lits finds the literals made of ASCII bytes; wide, the ones with
	// other bytes (accented or non-Latin words). wide runs only on texts
	// that hold a non-ASCII byte, so those literals cost ASCII texts
	// nothing; wideIDs maps its pattern ids to the shared ones.
	lits    *literalSet
	wide    *literalSet
	wideIDs []int32
	// patternAlts[p] lists the branches (with their rules) needing literal
	// p; patternProvider gives the provider a marker literal names.
	patternAlts     [][]altRef
	patternProvider []string
	// patLen[p] is the length of literal p; nearFirst[k] and nearThen[k]
	// mark the literals of near branch k's two sets.
	patLen              []int32
	nearFirst, nearThen [][]uint64
	// markers: the literals naming a provider have the ids below it.
	markers int32
	// infos[i] describes rule i's reason; unclassified, no rule's.
	infos        []ReasonInfo
	unclassified ReasonInfo
	scratch      sync.Pool
}

type altRef struct{ rule, alt int }

type scratch struct {
	text  []byte
	rules []uint64
	// altGen[k] == gen marks branch k as worth trying for the text at
	// hand (see marked): each classification takes a new gen, so nothing
	// needs clearing between texts.
	altGen []uint32
	gen    uint32
	// first and last hold, per branch marked by the prefilter,
	// the least and the greatest end of an occurrence of a literal it
	// needs: a match of a branch of bounded width lies near them.
	first, last []int32
	// hits are the literal occurrences the prefilter found.
	hits []hit
	// provider named by a marker literal, if any.
	marker string
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
	c := &Classifier{rules: rules, ruleAlts: make([][2]int, len(rules)), infos: make([]ReasonInfo, len(rules))}
	c.unclassified, _ = LookupReason("unclassified")
	for i, r := range rules {
		c.infos[i], _ = LookupReason(r.Reason)
	}
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
			if alt.literals != nil {
				needs = alt.literals
			}
			if needs == nil {
				setBit(c.alwaysRules, i)
				setBit(c.alwaysAlts, k)
				c.alwaysAltList = append(c.alwaysAltList, int32(k))
				continue
			}
			for _, lit := range needs {
				p := add(lit)
				c.patternAlts[p] = append(c.patternAlts[p], altRef{i, k})
			}
		}
	}
	// The further words a branch needs are literals too: the prefilter
	// notes which occur, so a branch whose words are not all there is
	// skipped without searching the text again.
	// Both word sets of a near branch are scanned for (the prefilter
	// marks the branch by one of them).
	nearThen := make([][]int, len(c.alts))
	for k, alt := range c.alts {
		if alt.near != nil {
			for _, lit := range alt.near.first {
				add(lit)
			}
			for _, lit := range alt.near.then {
				nearThen[k] = append(nearThen[k], add(lit))
			}
		}
	}
	var narrow, wide []string
	narrowIDs := []int32{}
	for p, lit := range patterns {
		if isASCII(lit) {
			narrow = append(narrow, lit)
			narrowIDs = append(narrowIDs, int32(p))
		} else {
			wide = append(wide, lit)
			c.wideIDs = append(c.wideIDs, int32(p))
		}
	}
	// The narrow automaton reports shared ids directly: its patterns come
	// first in patterns order, so narrowIDs is the identity up to the first
	// wide literal. Renumber to keep that simple invariant.
	c.renumber(narrowIDs, c.wideIDs)
	newID := make([]int32, len(patterns))
	for i, p := range narrowIDs {
		newID[p] = int32(i)
	}
	for i, p := range c.wideIDs {
		newID[p] = int32(len(narrowIDs) + i)
	}
	c.patLen = make([]int32, len(patterns))
	for p, lit := range patterns {
		c.patLen[newID[p]] = int32(len(lit))
	}
	c.nearFirst = make([][]uint64, len(c.alts))
	c.nearThen = make([][]uint64, len(c.alts))
	for k, alt := range c.alts {
		if alt.near == nil {
			continue
		}
		c.nearFirst[k] = make([]uint64, words(len(patterns)))
		c.nearThen[k] = make([]uint64, words(len(patterns)))
		for _, lit := range alt.near.first {
			setBit(c.nearFirst[k], int(newID[index[lit]]))
		}
		for _, p := range nearThen[k] {
			setBit(c.nearThen[k], int(newID[p]))
		}
	}
	c.lits = newLiteralSet(narrow)
	if len(wide) > 0 {
		c.wide = newLiteralSet(wide)
		for i := range c.wideIDs {
			c.wideIDs[i] = int32(len(narrow) + i)
		}
	}
	for p, lit := range c.lits.patterns {
		if c.patternProvider[p] != "" {
			if int32(p) != c.markers {
				return nil, fmt.Errorf("provider marker %q is not among the first literals", lit)
			}
			c.markers++
		}
	}
	c.scratch.New = func() any {
		return &scratch{
			rules: make([]uint64, len(c.alwaysRules)), altGen: make([]uint32, len(c.alts)),
			first: make([]int32, len(c.alts)), last: make([]int32, len(c.alts)),
			hits: make([]hit, 0, 64),
		}
	}
	return c, nil
}

// renumber orders the pattern tables so that the ASCII literals (ids in
// narrow) come first, then the others (ids in wide).
func (c *Classifier) renumber(narrow, wide []int32) {
	order := append(append([]int32(nil), narrow...), wide...)
	alts := make([][]altRef, len(order))
	prov := make([]string, len(order))
	for i, p := range order {
		alts[i], prov[i] = c.patternAlts[p], c.patternProvider[p]
	}
	c.patternAlts, c.patternProvider = alts, prov
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
	var wide bool
	sc.text, wide = normalizeText(sc.text[:0], text)
	lower := sc.text

	reply, status := findCodes(lower)
	if given, ok := ParseStatus(in.Status); ok && (status.IsZero() || !given.Generic()) {
		// A specific status field stands; a generic one (5.0.0) yields to
		// a specific code inside the text.
		status = given
	}

	c.prefilter(sc, lower, wide)
	provider := ProviderForDomain(domainPart(in.Email))
	if provider == "" {
		provider = sc.marker
	}

	res := Result{ReplyCode: reply, Status: status, Provider: provider}
	res.Reason, res.Rule, res.DecidedBy = "unclassified", RuleNoMatch, DecidedByNone
	info := c.unclassified
	for w, word := range sc.rules {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			word &= word - 1
			if c.matches(i, sc, lower, reply, status, provider, typ, event) {
				r := &c.rules[i]
				res.Reason, res.Rule, info = r.Reason, r.ID, c.infos[i]
				res.DecidedBy = DecidedByCode
				if r.Text != "" {
					res.DecidedBy = DecidedByText
				}
				goto decided
			}
		}
	}
decided:
	c.scratch.Put(sc)
	res.Classification = info.Class
	res.BounceType = Soft
	if info.MayBeHard && event != "deferred" && codeClass(reply, status) != 4 {
		res.BounceType = Hard
	}
	return res, nil
}

// prefilter marks in sc the rules and branches worth trying on text: those
// tried always, and those needing a literal that text contains, with where
// the literals occur. wide says whether text holds a non-ASCII byte.
func (c *Classifier) prefilter(sc *scratch, text []byte, wide bool) {
	for w, bits := range c.alwaysRules {
		sc.rules[w] = bits
	}
	sc.gen++
	if sc.gen == 0 { // wrapped: forget the old marks
		clear(sc.altGen)
		sc.gen = 1
	}
	gen := sc.gen
	for _, k := range c.alwaysAltList {
		sc.altGen[k] = gen
	}
	sc.marker = ""
	sc.hits = c.lits.scan(text, sc.hits[:0])
	if wide && c.wide != nil {
		n := len(sc.hits)
		sc.hits = c.wide.scan(text, sc.hits)
		for i := n; i < len(sc.hits); i++ {
			sc.hits[i].id = c.wideIDs[sc.hits[i].id]
		}
	}
	for _, h := range sc.hits {
		for _, ref := range c.patternAlts[h.id] {
			setBit(sc.rules, ref.rule)
			if sc.altGen[ref.alt] != gen {
				sc.altGen[ref.alt] = gen
				sc.first[ref.alt], sc.last[ref.alt] = h.end, h.end
			} else {
				sc.first[ref.alt] = min(sc.first[ref.alt], h.end)
				sc.last[ref.alt] = max(sc.last[ref.alt], h.end)
			}
		}
		if h.id < c.markers && sc.marker == "" {
			sc.marker = c.patternProvider[h.id]
		}
	}
}

// marked reports whether the prefilter marked branch k as worth trying.
func (sc *scratch) marked(k int) bool { return sc.altGen[k] == sc.gen }

// window returns the part of text a match of branch k must lie in: within
// the branch's maximum width of the literal occurrences the prefilter saw,
// widened to ASCII non-word bytes so that \b and \B see what they would
// in the whole text. Branches without a bounded width get the whole text.
func (c *Classifier) window(k int, sc *scratch, text []byte) []byte {
	w := c.alts[k].width
	if w < 0 || hasBit(c.alwaysAlts, k) {
		return text
	}
	lo, hi := int(sc.first[k])-w, int(sc.last[k])+w
	if lo <= 0 && hi >= len(text) {
		return text
	}
	lo, hi = max(lo, 0), min(hi, len(text))
	for lo > 0 && !asciiNonWord(text[lo-1]) {
		lo--
	}
	for hi < len(text) && !asciiNonWord(text[hi]) {
		hi++
	}
	return text[lo:hi]
}

func asciiNonWord(b byte) bool {
	return b < utf8.RuneSelf && !isAlnum(b) && b != '_'
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
func (c *Classifier) matches(i int, sc *scratch, text []byte, reply uint16, status StatusCode, provider, typ, event string) bool {
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
		if !sc.marked(k) {
			continue
		}
		if c.branchMatches(k, sc, text) {
			return true
		}
	}
	return false
}

// branchMatches reports whether branch k, marked by the prefilter, matches
// text: a plain-string branch does; a near branch is decided from the
// literal occurrences; otherwise its further words must be in the window
// and its expression must match there.
func (c *Classifier) branchMatches(k int, sc *scratch, text []byte) bool {
	alt := c.alts[k]
	if alt.re == nil {
		return true
	}
	if alt.near != nil {
		return c.nearMatches(k, alt.near, sc, text)
	}
	if alt.tail != nil && len(text) > alt.tailWidth {
		// A match ends at the end of the text and starts in its last
		// tailWidth bytes, so not at its beginning: tail (without ^) on
		// those bytes, widened to an ASCII non-word byte for \b, decides.
		lo := len(text) - alt.tailWidth
		for lo > 0 && !asciiNonWord(text[lo-1]) {
			lo--
		}
		if lo > 0 {
			return alt.tail.Match(text[lo:])
		}
		return alt.re.Match(text)
	}
	w := c.window(k, sc, text)
	return containsAll(w, alt.more) && alt.re.Match(w)
}

// containsAll reports whether text holds a string of every set.
func containsAll(text []byte, sets [][][]byte) bool {
	for _, set := range sets {
		found := false
		for _, lit := range set {
			if bytes.Contains(text, lit) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// nearMatches decides near branch k from the literal occurrences: one of
// its first set must end at most n characters before one of its second set
// starts (or, without a second set, occur), each with the word boundaries
// the branch asks for.
func (c *Classifier) nearMatches(k int, nb *nearBranch, sc *scratch, text []byte) bool {
	first, then := c.nearFirst[k], c.nearThen[k]
	if nb.then == nil {
		for _, a := range sc.hits {
			if hasBit(first, int(a.id)) && c.edgesHold(nb.edges, firstStart, firstEnd, a, text) {
				return true
			}
		}
		return false
	}
	n := nb.n
	for _, b := range sc.hits {
		if !hasBit(then, int(b.id)) || !c.edgesHold(nb.edges, thenStart, thenEnd, b, text) {
			continue
		}
		start := int(b.end - c.patLen[b.id])
		for _, a := range sc.hits {
			gap := start - int(a.end)
			if gap < 0 || gap > n*utf8.UTFMax || !hasBit(first, int(a.id)) {
				continue
			}
			if (gap <= n || runeCount(text[a.end:start]) <= n) && c.edgesHold(nb.edges, firstStart, firstEnd, a, text) {
				return true
			}
		}
	}
	return false
}

// edgesHold reports whether occurrence h has a word boundary at its start
// when edges holds the start bit, and at its end when it holds the end bit.
func (c *Classifier) edgesHold(edges, start, end uint8, h hit, text []byte) bool {
	if edges&start != 0 && !wordBoundary(text, int(h.end-c.patLen[h.id])) {
		return false
	}
	return edges&end == 0 || wordBoundary(text, int(h.end))
}

// wordBoundary reports whether \b holds at text[i]: one side is an ASCII
// word character (letter, digit, '_') and the other is not (or is outside
// the text), as regexp decides it.
func wordBoundary(text []byte, i int) bool {
	before := i > 0 && isWordByte(text[i-1])
	after := i < len(text) && isWordByte(text[i])
	return before != after
}

func isWordByte(b byte) bool { return isAlnum(b) || b == '_' }

// runeCount counts the characters of b as regexp's '.' does: UTF-8
// sequences, each invalid byte on its own.
func runeCount(b []byte) int {
	return utf8.RuneCount(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
