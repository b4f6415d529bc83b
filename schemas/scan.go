package schemas

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the strict JSON scanning primitives (RFC 8259: no NaN, no
// leading zeros, no control characters or unknown escapes in strings) used by
// the Decoder. They accept exactly what encoding/json's Valid accepts, except
// that invalid UTF-8 inside a string is reported as an element problem
// (non_utf8) rather than silently replaced.

// strPlain marks the bytes a string can hold without a closer look.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainRun returns the index of the first byte at or after i that is not
// plain string content (see strPlain), or len(b). It tests eight bytes at a
// time: a byte is special when it is below 0x20, is '"' or '\\', or has the
// high bit set. The lowest flagged byte is exact (borrows only flag bytes
// above a special one), which is all that is needed.
func plainRun(b []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (lo * '"')
		bs := x ^ (lo * '\\')
		t := ((x-lo*0x20)&^x | (q-lo)&^q | (bs-lo)&^bs | x) & hi
		if t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
		i += 8
	}
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// ws skips JSON white space.
func (d *Decoder) ws() {
	b, i := d.b, d.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	d.i = i
}

// peek returns the byte at the cursor, or 0 at the end (0 is never valid
// where peek is used, so it reads as a syntax error).
func (d *Decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// syntax records a message-level invalid_json and returns false.
func (d *Decoder) syntax(what string) bool {
	if d.i >= len(d.b) {
		return d.fail(CodeInvalidJSON, what+" at end of input")
	}
	return d.fail(CodeInvalidJSON, fmt.Sprintf("%s at byte %d", what, d.i))
}

// str scans the string whose opening quote is at the cursor and returns the
// bounds of its raw content (without quotes) and whether it has escapes.
func (d *Decoder) str() (s, e int, esc, ok bool) {
	b := d.b
	i := d.i + 1
	s = i
	for {
		i = plainRun(b, i)
		if i >= len(b) {
			d.i = i
			return s, i, esc, d.syntax("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			d.i = i + 1
			return s, i, esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				d.i = i
				return s, i, esc, d.syntax("unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					d.i = i
					return s, i, esc, d.syntax(`invalid \u escape`)
				}
				i += 6
			default:
				d.i = i
				return s, i, esc, d.syntax("invalid escape")
			}
		case c < 0x20:
			d.i = i
			return s, i, esc, d.syntax("control character in string")
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				d.problem(CodeNonUTF8, fmt.Sprintf("invalid UTF-8 at byte %d", i))
			}
			i += size
		}
	}
}

// num scans a number at the cursor and returns its bounds.
func (d *Decoder) num() (s, e int, ok bool) {
	b := d.b
	i := d.i
	s = i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		d.i = i
		return s, i, d.syntax("invalid character")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			d.i = i
			return s, i, d.syntax("invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			d.i = i
			return s, i, d.syntax("invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	d.i = i
	return s, i, true
}

// lit scans true, false or null at the cursor.
func (d *Decoder) lit() bool {
	var want string
	switch d.peek() {
	case 't':
		want = "true"
	case 'f':
		want = "false"
	default:
		want = "null"
	}
	if len(d.b)-d.i < len(want) || string(d.b[d.i:d.i+len(want)]) != want {
		return d.syntax("invalid literal")
	}
	d.i += len(want)
	return true
}

// enter checks the depth of a container about to be entered. depth counts
// containers from the element (the element itself is 1); the message adds
// d.base.
func (d *Decoder) enter(depth int) bool {
	if d.base+depth > messageDepthLimit {
		return d.fail(CodeTooDeep, fmt.Sprintf("message nests deeper than %d", messageDepthLimit))
	}
	if depth > d.maxDepth {
		d.problem(CodeTooDeep, fmt.Sprintf("nesting deeper than %d", d.maxDepth))
	}
	return true
}

// skip scans any value at the cursor, checking syntax, depth, UTF-8 and
// duplicate keys. depth is that of the enclosing container. With capture set
// it appends the value, compacted, to d.custom.
func (d *Decoder) skip(depth int, capture bool) bool {
	switch c := d.peek(); c {
	case '"':
		start := d.i
		if _, _, _, ok := d.str(); !ok {
			return false
		}
		if capture {
			d.custom = append(d.custom, d.b[start:d.i]...)
		}
		return true
	case '{':
		return d.skipObject(depth+1, capture)
	case '[':
		return d.skipArray(depth+1, capture)
	case 't', 'f', 'n':
		start := d.i
		if !d.lit() {
			return false
		}
		if capture {
			d.custom = append(d.custom, d.b[start:d.i]...)
		}
		return true
	case 0:
		return d.syntax("unexpected end of input")
	default:
		s, e, ok := d.num()
		if ok && capture {
			d.custom = append(d.custom, d.b[s:e]...)
		}
		return ok
	}
}

func (d *Decoder) skipArray(depth int, capture bool) bool {
	if !d.enter(depth) {
		return false
	}
	d.i++
	if capture {
		d.custom = append(d.custom, '[')
	}
	d.ws()
	if d.peek() == ']' {
		d.i++
		if capture {
			d.custom = append(d.custom, ']')
		}
		return true
	}
	for {
		d.ws()
		if !d.skip(depth, capture) {
			return false
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			if capture {
				d.custom = append(d.custom, ',')
			}
		case ']':
			d.i++
			if capture {
				d.custom = append(d.custom, ']')
			}
			return true
		default:
			return d.syntax("want ',' or ']' in array")
		}
	}
}

func (d *Decoder) skipObject(depth int, capture bool) bool {
	if !d.enter(depth) {
		return false
	}
	d.i++
	if capture {
		d.custom = append(d.custom, '{')
	}
	d.ws()
	if d.peek() == '}' {
		d.i++
		if capture {
			d.custom = append(d.custom, '}')
		}
		return true
	}
	keys := d.newKeySet()
	defer d.dropKeySet(keys)
	for {
		d.ws()
		if d.peek() != '"' {
			return d.syntax("want object key")
		}
		start := d.i
		s, e, esc, ok := d.str()
		if !ok {
			return false
		}
		if d.addKey(&keys, keyRef{s, e, esc}) {
			d.problem(CodeDuplicateKey, fmt.Sprintf("duplicate key %s in nested object", quoteTrunc(d.keyBytes(keyRef{s, e, esc}, &d.s1))))
		}
		if capture {
			d.custom = append(d.custom, d.b[start:d.i]...)
			d.custom = append(d.custom, ':')
		}
		d.ws()
		if d.peek() != ':' {
			return d.syntax("want ':' after object key")
		}
		d.i++
		d.ws()
		if !d.skip(depth, capture) {
			return false
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.i++
			if capture {
				d.custom = append(d.custom, ',')
			}
		case '}':
			d.i++
			if capture {
				d.custom = append(d.custom, '}')
			}
			return true
		default:
			return d.syntax("want ',' or '}' in object")
		}
	}
}

// keyRef is an object key: the bounds of its raw content in d.b.
type keyRef struct {
	s, e int
	esc  bool
}

// keySet tracks the keys of one object for duplicate detection: a linear scan
// over d.keys for small objects, a map once the object grows.
type keySet struct {
	base int
	m    map[string]struct{}
}

const keySetLinear = 16

func (d *Decoder) newKeySet() keySet { return keySet{base: len(d.keys)} }

func (d *Decoder) dropKeySet(ks keySet) { d.keys = d.keys[:ks.base] }

// addKey adds k to ks and reports whether it was already there. Keys compare
// after unescaping, as JSON defines.
func (d *Decoder) addKey(ks *keySet, k keyRef) (dup bool) {
	if ks.m != nil {
		kb := d.keyBytes(k, &d.s1)
		if _, dup = ks.m[string(kb)]; !dup {
			ks.m[string(kb)] = struct{}{}
		}
		return dup
	}
	for _, o := range d.keys[ks.base:] {
		if d.keyEq(o, k) {
			return true
		}
	}
	d.keys = append(d.keys, k)
	if len(d.keys)-ks.base > keySetLinear {
		ks.m = make(map[string]struct{}, 2*keySetLinear)
		for _, o := range d.keys[ks.base:] {
			ks.m[string(d.keyBytes(o, &d.s1))] = struct{}{}
		}
	}
	return false
}

func (d *Decoder) keyEq(a, b keyRef) bool {
	if !a.esc && !b.esc {
		return string(d.b[a.s:a.e]) == string(d.b[b.s:b.e])
	}
	return string(d.keyBytes(a, &d.s1)) == string(d.keyBytes(b, &d.s2))
}

// keyBytes returns k unescaped, in buf when it has escapes.
func (d *Decoder) keyBytes(k keyRef, buf *[]byte) []byte {
	if !k.esc {
		return d.b[k.s:k.e]
	}
	*buf = unescape((*buf)[:0], d.b[k.s:k.e])
	return *buf
}

// unescape appends the decoded form of src, the raw content of a string that
// str accepted. Like encoding/json, a lone or mismatched surrogate becomes
// U+FFFD.
func unescape(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		if src[i] != '\\' {
			j := i + 1
			for j < len(src) && src[j] != '\\' {
				j++
			}
			dst = append(dst, src[i:j]...)
			i = j
			continue
		}
		c := src[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(src[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
					r2 = hex4(src[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// jsonInt reports whether the JSON number text s is mathematically an
// integer (as JSON Schema's "integer" means it: 1.0 and 1e2 are) and, if it
// is and fits, its value. Exact: no float rounding.
func jsonInt(s []byte) (v int64, integral, fits bool) {
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[:i]
	s = s[i:]
	var frac []byte
	if len(s) > 0 && s[0] == '.' {
		j := 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		frac = s[1:j]
		s = s[j:]
	}
	exp := 0
	if len(s) > 0 { // e or E
		s = s[1:]
		expNeg := false
		if s[0] == '+' || s[0] == '-' {
			expNeg = s[0] == '-'
			s = s[1:]
		}
		for _, c := range s {
			if exp < 1e9 {
				exp = exp*10 + int(c-'0')
			}
		}
		if expNeg {
			exp = -exp
		}
	}
	n := len(intPart) + len(frac)
	dig := func(k int) byte {
		if k < len(intPart) {
			return intPart[k]
		}
		return frac[k-len(intPart)]
	}
	e := exp - len(frac)
	lo, hi := 0, n
	for lo < hi && dig(lo) == '0' {
		lo++
	}
	for hi > lo && dig(hi-1) == '0' {
		hi--
		e++
	}
	if lo == hi {
		return 0, true, true
	}
	if e < 0 {
		return 0, false, false
	}
	if hi-lo+e > 19 {
		return 0, true, false
	}
	var u uint64
	for k := lo; k < hi; k++ {
		u = u*10 + uint64(dig(k)-'0')
	}
	for ; e > 0; e-- {
		if u > (1<<63-1)/10 {
			return 0, true, false
		}
		u *= 10
	}
	if u > 1<<63-1 {
		return 0, true, false
	}
	if neg {
		return -int64(u), true, true
	}
	return int64(u), true, true
}
