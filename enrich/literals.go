package enrich

// literalSet finds which of a fixed set of strings occur in a text: an
// Aho-Corasick automaton compiled to a dense DFA over byte classes. Scanning
// allocates nothing and reports every occurrence, overlapping ones included
// (a library automaton we used before allocated a match list per call,
// which was half the classifier's time on short replies).
type literalSet struct {
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

func newLiteralSet(patterns []string) *literalSet {
	m := &literalSet{nclass: 1}
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
		}
	}
	m.endAt = make([]int32, states+1)
	for s, o := range outs {
		m.ends = append(m.ends, o...)
		m.endAt[s+1] = int32(len(m.ends))
	}
	// Premultiply targets into rows and flag the states where patterns end.
	for i, t := range m.next {
		v := t * nc
		if len(outs[t]) > 0 {
			v |= endsFlag
		}
		m.next[i] = v
	}
	return m
}

// scan calls found for every pattern id occurring in text, once per
// occurrence.
func (m *literalSet) scan(text []byte, found func(id int32)) {
	row := int32(0)
	next, class := m.next, &m.class
	for _, b := range text {
		v := next[row+class[b]]
		row = v &^ endsFlag
		if v < 0 {
			s := row / int32(m.nclass)
			for _, id := range m.ends[m.endAt[s]:m.endAt[s+1]] {
				found(id)
			}
		}
	}
}
