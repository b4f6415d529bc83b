package enrich

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The automaton reports exactly the occurrences strings.Index finds.
func TestLiteralSetFindsEveryOccurrence(t *testing.T) {
	patterns := []string{"he", "she", "his", "hers", "user unknown", "unknown", "nknow", "a", "aa", "aaa", "5.1.1", "(#5", "é"}
	m := newLiteralSet(patterns)
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := "ahesiruknow .5#(1é"
	texts := []string{"", "ushers", "user unknown here", "aaaa", "550 (#5.1.1)", "café é"}
	for i := 0; i < 2000; i++ {
		var b strings.Builder
		for j := rng.IntN(40); j > 0; j-- {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		got := make([]int, len(patterns))
		for _, h := range m.scan([]byte(text), nil) {
			id, end := h.id, int(h.end)
			if text[end-len(patterns[id]):end] != patterns[id] {
				t.Fatalf("%q in %q: reported ending at %d", patterns[id], text, end)
			}
			got[id]++
		}
		for id, p := range patterns {
			want := 0
			for i := 0; i+len(p) <= len(text); i++ {
				if text[i:i+len(p)] == p {
					want++
				}
			}
			if got[id] != want {
				t.Fatalf("%q in %q: found %d times, want %d", p, text, got[id], want)
			}
		}
	}
}

func BenchmarkLiteralSetScan(b *testing.B) {
	c := MustNew()
	text := normalize(nil, "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. - gsmtp")
	n := 0
	hits := make([]hit, 0, 64)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		n += len(c.lits.scan(text, hits[:0]))
	}
}
