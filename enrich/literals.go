package enrich

// literalSet finds which of a fixed set of strings occur in a text: an
// Aho-Corasick automaton compiled to a dense DFA over byte classes, over the
// first anchorLen bytes of each string (its anchor); where an anchor occurs,
// the rest of the string is compared in place. Scanning allocates nothing
// and reports every occurrence, overlapping ones included.
//
// Anchors keep the table small: for the built-in rules about 1,600 states
// instead of 7,800, so the states a text visits stay in cache. Library
// automata we measured (github.com/coregx/ahocorasick v0.3.1) allocate a
// match list per overlapping scan and were slower on our texts.
type literalSet struct {
	// patterns and, per anchor id, the patterns starting with it; rest[id]
	// is the part of pattern id after its anchor.
	patterns   []string
	rest       []string
	anchorLen  []int32
	anchorPats [][]int32

	class  [256]int32 // byte -> column; 0 for bytes no pattern contains
	nclass int
	// next[row+class] is the next state's row (state*nclass), with
	// endsFlag set when patterns end in that state.
	next []int32
	// The patterns that end in a state, its failure chain included:
	// ends[endAt[s]:endAt[s+1]].
	endAt []int32
	ends  []int32
}

const endsFlag = -1 << 31

// anchorLen is how many leading bytes of a string the automaton matches.
// Shorter anchors mean a smaller table but more in-place comparisons.
const anchorLen = 12

func newLiteralSet(literals []string) *literalSet {
	m := &literalSet{nclass: 1, patterns: literals}
	index := map[string]int32{}
	var patterns []string // the anchors
	for id, lit := range literals {
		a := lit[:min(len(lit), anchorLen)]
		aid, ok := index[a]
		if !ok {
			aid = int32(len(patterns))
			index[a] = aid
			patterns = append(patterns, a)
			m.anchorLen = append(m.anchorLen, int32(len(a)))
			m.anchorPats = append(m.anchorPats, nil)
		}
		m.anchorPats[aid] = append(m.anchorPats[aid], int32(id))
		m.rest = append(m.rest, lit[len(a):])
	}
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			if m.class[p[i]] == 0 {
				m.class[p[i]] = int32(m.nclass)
				m.nclass++
			}
		}
	}
	// The trie: goto[state*nclass+class], -1 where there is no edge.
	edges := []int32{}
	grow := func() int32 {
		for i := 0; i < m.nclass; i++ {
			edges = append(edges, -1)
		}
		return int32(len(edges)/m.nclass - 1)
	}
	grow() // root
	own := [][]int32{nil}
	for id, p := range patterns {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			c := int32(m.class[p[i]])
			if edges[s*int32(m.nclass)+c] < 0 {
				edges[s*int32(m.nclass)+c] = grow()
				own = append(own, nil)
			}
			s = edges[s*int32(m.nclass)+c]
		}
		own[s] = append(own[s], int32(id))
	}
	states := len(own)
	nc := int32(m.nclass)
	m.next = make([]int32, states*m.nclass)
	fail := make([]int32, states)
	outs := make([][]int32, states)
	outs[0] = own[0]
	// Breadth first, so a state's failure target is complete before it.
	queue := make([]int32, 0, states)
	for c := int32(0); c < nc; c++ {
		if t := edges[c]; t > 0 {
			m.next[c] = t
			fail[t] = 0
			queue = append(queue, t)
		}
	}
	// order lists the states breadth first; the table is laid out in that
	// order, so the shallow states that most bytes of a text visit share
	// a few cache lines instead of being spread over the table.
	order := append([]int32{0}, queue...)
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		outs[s] = append(append([]int32(nil), own[s]...), outs[fail[s]]...)
		for c := int32(0); c < nc; c++ {
			t := edges[s*nc+c]
			if t < 0 {
				m.next[s*nc+c] = m.next[fail[s]*nc+c]
				continue
			}
			m.next[s*nc+c] = t
			fail[t] = m.next[fail[s]*nc+c]
			queue = append(queue, t)
			order = append(order, t)
		}
	}
	rank := make([]int32, states)
	for i, s := range order {
		rank[s] = int32(i)
	}
	m.endAt = make([]int32, states+1)
	for i, s := range order {
		m.ends = append(m.ends, outs[s]...)
		m.endAt[i+1] = int32(len(m.ends))
	}
	// Renumber breadth first, premultiply targets into rows and flag the
	// states where patterns end.
	next := make([]int32, len(m.next))
	for s := int32(0); s < int32(states); s++ {
		for c := int32(0); c < nc; c++ {
			t := m.next[s*nc+c]
			v := rank[t] * nc
			if len(outs[t]) > 0 {
				v |= endsFlag
			}
			next[rank[s]*nc+c] = v
		}
	}
	m.next = next
	return m
}

// scan calls found for every pattern id occurring in text, once per
// occurrence, with the index in text just after the occurrence. Calls come
// in the order the occurrences start, not end.
func (m *literalSet) scan(text []byte, found func(id int32, end int)) {
	row := int32(0)
	next, class := m.next, &m.class
	for i, b := range text {
		v := next[row+class[b]]
		row = v &^ endsFlag
		if v < 0 {
			s := row / int32(m.nclass)
			for _, aid := range m.ends[m.endAt[s]:m.endAt[s+1]] {
				for _, id := range m.anchorPats[aid] {
					rest := m.rest[id]
					if end := i + 1 + len(rest); len(rest) == 0 || end <= len(text) && string(text[i+1:end]) == rest {
						found(id, end)
					}
				}
			}
		}
	}
}
