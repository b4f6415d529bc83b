package enrich

import (
	"encoding/binary"
	"slices"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// normalize appends text to dst lower-cased with runs of white space folded
// to one space and surrounding space trimmed.
func normalize(dst []byte, text string) []byte {
	dst, _ = normalizeText(dst, text)
	return dst
}

// asciiFold maps an ASCII byte to itself lower-cased and white space to
// ' '; NUL and the bytes of multi-byte sequences map to 0 (the slow path).
var asciiFold = func() (t [256]byte) {
	for c := 1; c < utf8.RuneSelf; c++ {
		t[c] = byte(c)
		if c >= 'A' && c <= 'Z' {
			t[c] = byte(c) + 'a' - 'A'
		}
	}
	for _, c := range []byte{' ', '\t', '\n', '\r', '\f', '\v'} {
		t[c] = ' '
	}
	return t
}()

// normalizeText is normalize, and reports whether text holds a byte outside
// ASCII. It reads eight bytes at a time where they are plain (ASCII, no
// control bytes, no space next to another space or opening the output):
// such a word is lower-cased with a few arithmetic steps and stored whole.
// Other words go byte by byte, decoding runes where a byte is not ASCII,
// and the next word tries the fast way again. A space is written when its
// run starts and dropped again at the end of the text.
func normalizeText(dst []byte, text string) ([]byte, bool) {
	n0 := len(dst)
	// len(buf)-n >= len(text)-i holds throughout: what is left of text
	// fits in what is left of buf (only a rune whose lower case is longer
	// than itself needs more, and grows buf).
	buf := slices.Grow(dst, len(text))[:n0+len(text)]
	n, i := n0, 0
	space := true // the output is empty or ends in a space
	wide := false
	for i < len(text) {
		if len(text)-i >= 8 && text[i] < utf8.RuneSelf {
			// Perhaps a plain word (not worth a call where the text is
			// not Latin).
			k, sp := foldWords(buf[n:], text[i:], space)
			n, i, space = n+k, i+k, sp
		}
		// Up to eight bytes one at a time: a word the fast way refused.
		for stop := min(i+8, len(text)); i < stop; {
			c := text[i]
			if f := asciiFold[c]; f != 0 {
				i++
				if f == ' ' {
					if space {
						continue
					}
					space = true
				} else {
					space = false
				}
				buf[n] = f
				n++
				continue
			}
			space = false
			if c < utf8.RuneSelf { // NUL
				buf[n] = c
				n++
				i++
				continue
			}
			wide = true
			r, size := utf8.DecodeRuneInString(text[i:])
			if r == utf8.RuneError && size == 1 || caseless(r) {
				n += copy(buf[n:], text[i:i+size]) // invalid UTF-8 passes as is
				i += size
				continue
			}
			lr := lowerRune(r)
			if need := n + utf8.RuneLen(lr) + len(text) - i - size; need > len(buf) {
				buf = slices.Grow(buf, need-len(buf))[:need]
			}
			n += utf8.EncodeRune(buf[n:], lr)
			i += size
		}
	}
	if n > n0 && buf[n-1] == ' ' {
		n--
	}
	return buf[:n], wide
}

// foldWords copies the leading plain words of eight bytes of src to dst
// lower-cased, and returns how many bytes it copied and whether the last
// one is a space. A word is plain when it is ASCII without control bytes,
// holds no two spaces in a row, and does not start with a space when space
// says the output ends in one. dst must be at least as long as src.
func foldWords(dst []byte, text string, space bool) (int, bool) {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	n := min(len(text), len(dst)) &^ 7
	src := unsafe.Pointer(unsafe.StringData(text)) // read only
	out := unsafe.Pointer(unsafe.SliceData(dst))
	// lead is the high bit of a space opening the next word when the
	// output ends in a space (such a space is dropped, not copied).
	lead := uint64(0)
	if space {
		lead = 0x80
	}
	i := 0
	for ; i < n; i += 8 {
		// i+8 <= n <= len(text), len(dst).
		w := binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(src, i)), 8))
		// A high bit for each byte that is not ASCII or is a control byte,
		// and for each space byte (of ASCII bytes without control bytes).
		bad := (w | ^(w + 0x60*ones)) & high
		spaces := ^(w ^ 0x20*ones + 0x7f*ones) & high
		if bad|spaces&(spaces<<8|lead) != 0 {
			break // not ASCII, a control byte, or a space to drop
		}
		upper := (w + (0x80-'A')*ones) &^ (w + (0x80-'Z'-1)*ones) & high
		binary.LittleEndian.PutUint64(unsafe.Slice((*byte)(unsafe.Add(out, i)), 8), w|upper>>2)
		lead = spaces >> 56
	}
	return i, lead != 0
}

// lowerTable holds unicode.ToLower of the runes below len(lowerTable)
// (Latin, Greek, Cyrillic, Armenian, Hebrew), which spares most accented
// and Cyrillic text the case table search.
var lowerTable = func() (t [0x600]uint16) {
	for r := range t {
		t[r] = uint16(unicode.ToLower(rune(r)))
	}
	return t
}()

func lowerRune(r rune) rune {
	if r < rune(len(lowerTable)) {
		return rune(lowerTable[r])
	}
	return unicode.ToLower(r)
}

// caseless reports runes of scripts without letter case (CJK symbols and
// punctuation, kana, CJK ideographs, Hangul syllables), which lower-case to
// themselves without a table search.
func caseless(r rune) bool {
	return r >= 0x3000 && r < 0xa000 || r >= 0xac00 && r < 0xd7b0
}
