package enrich

import (
	"encoding/binary"
	"unsafe"
)

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

	class  [256]uint32 // byte -> column; 0 for bytes no pattern contains
	nclass int
	// next[row+class] is the next state's row (state*nclass). States are
	// numbered so that those where patterns end come last, from row
	// endRow on: the scanning loop tells them with one comparison.
	next   []uint32
	endRow uint32
	// The patterns whose anchor ends in end state s (s >= firstEnd), its
	// failure chain included, in the order they are reported:
	// cands[candAt[s-firstEnd]:candAt[s-firstEnd+1]]. A state is its row
	// divided by nclass, computed as row*recip>>32 (exact for rows below
	// 2^32/nclass, which newLiteralSet checks).
	firstEnd uint32
	recip    uint64
	candAt   []int32
	cands    []candidate
}

// candidate is a pattern whose anchor ends in an end state, with what must
// follow the anchor: n bytes, the first min(n, 8) of them in w (little
// endian, the rest of the word masked off by mask), the others in tail.
type candidate struct {
	id, n   int32
	w, mask uint64
	tail    string
}

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
				m.class[p[i]] = uint32(m.nclass)
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
	dfa := make([]int32, states*m.nclass)
	fail := make([]int32, states)
	outs := make([][]int32, states)
	outs[0] = own[0]
	// Breadth first, so a state's failure target is complete before it.
	queue := make([]int32, 0, states)
	for c := int32(0); c < nc; c++ {
		if t := edges[c]; t > 0 {
			dfa[c] = t
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
				dfa[s*nc+c] = dfa[fail[s]*nc+c]
				continue
			}
			dfa[s*nc+c] = t
			fail[t] = dfa[fail[s]*nc+c]
			queue = append(queue, t)
			order = append(order, t)
		}
	}
	// Number the states breadth first, those where no pattern ends before
	// those where one does (each group keeping the breadth-first order).
	rank := make([]int32, states)
	numbered := 0
	for _, withEnds := range []bool{false, true} {
		for _, s := range order {
			if (len(outs[s]) > 0) == withEnds {
				rank[s] = int32(numbered)
				numbered++
			}
		}
		if !withEnds {
			m.endRow = uint32(numbered * m.nclass)
		}
	}
	byRank := make([]int32, states)
	for s, r := range rank {
		byRank[r] = int32(s)
	}
	m.firstEnd = m.endRow / uint32(m.nclass)
	m.recip = (1<<32 + uint64(m.nclass) - 1) / uint64(m.nclass)
	m.candAt = []int32{0}
	for r := int(m.firstEnd); r < states; r++ {
		if uint32((uint64(r*m.nclass)*m.recip)>>32) != uint32(r) {
			panic("literalSet: too many states for the row division")
		}
		for _, aid := range outs[byRank[r]] {
			for _, id := range m.anchorPats[aid] {
				rest := m.rest[id]
				c := candidate{id: id, n: int32(len(rest))}
				for k := 0; k < min(len(rest), 8); k++ {
					c.w |= uint64(rest[k]) << (8 * k)
					c.mask |= 0xff << (8 * k)
				}
				if len(rest) > 8 {
					c.tail = rest[8:]
				}
				m.cands = append(m.cands, c)
			}
		}
		m.candAt = append(m.candAt, int32(len(m.cands)))
	}
	// Renumber and premultiply targets into rows.
	next := make([]uint32, len(dfa))
	for s := int32(0); s < int32(states); s++ {
		for c := int32(0); c < nc; c++ {
			next[rank[s]*nc+c] = uint32(rank[dfa[s*nc+c]] * nc)
		}
	}
	m.next = next
	return m
}

// hit is one occurrence of a pattern: its id and the index just after it.
type hit struct{ id, end int32 }

// scan appends to hits every occurrence of a pattern in text and returns
// the result. Occurrences come in the order they start, not end. text must
// be shorter than 2 GiB.
func (m *literalSet) scan(text []byte, hits []hit) []hit {
	class, endRow := &m.class, m.endRow
	// The table is indexed without bounds checks: every entry is a row
	// start below len(m.next) and every class is below nclass, which
	// newLiteralSet guarantees and TestLiteralSetFindsEveryOccurrence and
	// FuzzPrefilter exercise.
	next := unsafe.Pointer(unsafe.SliceData(m.next))
	bytes := unsafe.Pointer(unsafe.SliceData(text))
	row := uint32(0)
	// step moves the automaton over text[i] (i < len(text)).
	step := func(row uint32, i int) uint32 {
		b := *(*byte)(unsafe.Add(bytes, i))
		return *(*uint32)(unsafe.Add(next, uintptr(row+class[b])*4))
	}
	i := 0
	for {
		// The loop that reads most bytes, four per round: one table step
		// and one comparison per byte, no call, so its variables stay in
		// registers.
		for i+4 <= len(text) {
			if row = step(row, i); row >= endRow {
				goto ends
			}
			if row = step(row, i+1); row >= endRow {
				i++
				goto ends
			}
			if row = step(row, i+2); row >= endRow {
				i += 2
				goto ends
			}
			if row = step(row, i+3); row >= endRow {
				i += 3
				goto ends
			}
			i += 4
		}
		for {
			if i == len(text) {
				return hits
			}
			if row = step(row, i); row >= endRow {
				break
			}
			i++
		}
	ends:
		e := uint32((uint64(row)*m.recip)>>32) - m.firstEnd
		for k, stop := m.candAt[e], m.candAt[e+1]; k < stop; k++ {
			c := &m.cands[k]
			end := i + 1 + int(c.n)
			if c.n != 0 {
				if end > len(text) {
					continue
				}
				if i+9 <= len(text) {
					// Compare the first eight bytes after the anchor as
					// one word, then what is longer.
					if binary.LittleEndian.Uint64(text[i+1:])&c.mask != c.w ||
						c.n > 8 && string(text[i+9:end]) != c.tail {
						continue
					}
				} else if string(text[i+1:end]) != m.rest[c.id] {
					continue
				}
			}
			hits = append(hits, hit{c.id, int32(end)})
		}
		i++
	}
}
