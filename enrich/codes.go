package enrich

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// StatusCode is an RFC 3463 enhanced status code class.subject.detail.
// The zero value means "none".
type StatusCode struct {
	Class, Subject, Detail uint16
}

// IsZero reports whether no code is present.
func (s StatusCode) IsZero() bool { return s.Class == 0 }

// Generic reports whether the code carries no information beyond its class:
// X.0.0, or one of the pseudo codes X.0.9xx that some bounce parsers invent
// and that never appear on the wire.
func (s StatusCode) Generic() bool {
	return s.Subject == 0 && (s.Detail == 0 || s.Detail >= 900)
}

func (s StatusCode) String() string {
	if s.IsZero() {
		return ""
	}
	var b [12]byte
	out := appendUint(b[:0], s.Class)
	out = append(out, '.')
	out = appendUint(out, s.Subject)
	out = append(out, '.')
	out = appendUint(out, s.Detail)
	return string(out)
}

func appendUint(b []byte, v uint16) []byte {
	var tmp [5]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// ParseStatus parses "5.1.1" (surrounding spaces and a leading '#' allowed).
// It returns the zero StatusCode and false when s is not an enhanced code.
func ParseStatus(s string) (StatusCode, bool) {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '#') {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	code, n := scanStatus(unsafe.Slice(unsafe.StringData(s), len(s)), 0) // read only
	if n != len(s) || code.IsZero() {
		return StatusCode{}, false
	}
	return code, true
}

// scanStatus reads an enhanced code starting at s[i]; n is the index after
// it, or i when there is none.
func scanStatus(s []byte, i int) (StatusCode, int) {
	if i >= len(s) || (s[i] != '2' && s[i] != '4' && s[i] != '5') {
		return StatusCode{}, i
	}
	if i+1 >= len(s) || s[i+1] != '.' {
		return StatusCode{}, i
	}
	// Subjects are 0-7 (RFC 3463); a longer number is a version string.
	subj, j := scanNum(s, i+2, 1)
	if j == i+2 || subj > 7 || j >= len(s) || s[j] != '.' {
		return StatusCode{}, i
	}
	det, k := scanNum(s, j+1, 3)
	if k == j+1 {
		return StatusCode{}, i
	}
	// A fourth component or a longer number means this was something else,
	// a version or an IP address.
	if k < len(s) && (isDigit(s[k]) || (s[k] == '.' && k+1 < len(s) && isDigit(s[k+1]))) {
		return StatusCode{}, i
	}
	return StatusCode{uint16(s[i] - '0'), subj, det}, k
}

func scanNum(s []byte, i, max int) (uint16, int) {
	var v uint16
	j := i
	for j < len(s) && j-i < max && isDigit(s[j]) {
		v = v*10 + uint16(s[j]-'0')
		j++
	}
	return v, j
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

// findCodes extracts the SMTP reply code and the first enhanced status code
// from a diagnostic text. It understands multi-line replies ("550-5.1.1"),
// qmail's "(#5.1.1)", codes after "said:" and DSN "smtp; 550 ..." forms: a
// reply code is a 2xx/4xx/5xx number standing alone and followed by a space,
// a dash or the end, or directly preceding an enhanced code.
func findCodes(s []byte) (reply uint16, status StatusCode) {
	for i := 0; i < len(s); i++ {
		// Once a permanent reply and a status are known nothing later can
		// change them (only a 4xx reply is replaced, only a missing status
		// is filled), so the rest of the text need not be read.
		if reply != 0 && reply/100 != 4 && !status.IsZero() {
			break
		}
		if i = nextCodeByte(s, i); i == len(s) {
			break
		}
		c := s[i]
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '.' || s[i-1] == '_' || s[i-1] == '/' || (s[i-1] == ':' && i > 1 && isDigit(s[i-2]))) {
			continue
		}
		if status.IsZero() {
			if code, n := scanStatus(s, i); n > i {
				status = code
				i = n - 1
				continue
			}
		}
		// A transcript may show a transient reply before the permanent one
		// that ended delivery ("450 busy - please try later 551 not our
		// user"): the final, permanent reply decides, so a later 5xx reply
		// replaces an earlier 4xx one.
		upgrade := reply/100 == 4 && c == '5'
		if (reply == 0 || upgrade) && i+2 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			end := i + 3
			if end == len(s) || s[end] == ' ' || s[end] == '-' || s[end] == ',' || s[end] == ')' || s[end] == ']' {
				// "550 5.1.1", "550-5.1.1", "said: 550 ...": accept a number at
				// the start, after punctuation, or before an enhanced code of
				// the same class; not one in running text ("in 421 seconds").
				// Replies folded onto one line lose their line break, so a
				// later permanent reply may also follow a space, when it is
				// a reply code RFC 5321 defines followed by a word.
				code := uint16(c-'0')*100 + uint16(s[i+1]-'0')*10 + uint16(s[i+2]-'0')
				if precededByCodeMarker(s, i) || followedByStatus(s, end, c) || (upgrade && foldedReply(s, i, end, code)) {
					if upgrade {
						if st, n := scanStatus(s, end+1); n > end+1 && st.Class == 5 {
							status = st
						}
					}
					reply = code
					i = end - 1
					continue
				}
			}
		}
	}
	return reply, status
}

// nextCodeByte returns the index of the first '2', '4' or '5' (the digits a
// reply or status code starts with) in s at or after i, or len(s). It tests
// eight bytes at a time: most of a text holds none of them.
func nextCodeByte(s []byte, i int) int {
	const (
		ones = 0x0101010101010101
		low  = 0x7f7f7f7f7f7f7f7f
		high = 0x8080808080808080
	)
	// zero has the high bit of each zero byte of x set, and no other bit.
	zero := func(x uint64) uint64 { return ^((x&low + low) | x | low) }
	for ; i+8 <= len(s); i += 8 {
		w := binary.LittleEndian.Uint64(s[i : i+8])
		if m := zero(w^'2'*ones) | zero(w^'4'*ones) | zero(w^'5'*ones); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == '2' || c == '4' || c == '5' {
			return i
		}
	}
	return len(s)
}

// foldedReply reports whether the permanent reply code at s[i:end] starts a
// reply that was on a line of its own: it follows a space, is one of the 5xx
// codes RFC 5321 defines, a word follows it, and the word before it is not
// one that puts a number in running text ("in 500 seconds", "max 550").
func foldedReply(s []byte, i, end int, code uint16) bool {
	switch code {
	case 500, 501, 502, 503, 504, 521, 550, 551, 552, 553, 554, 555, 556:
	default:
		return false
	}
	if i < 2 || s[i-1] != ' ' || end+1 >= len(s) || s[end] != ' ' || s[end+1] < 'a' || s[end+1] > 'z' {
		return false
	}
	j := i - 1
	for j > 0 && s[j-1] >= 'a' && s[j-1] <= 'z' {
		j--
	}
	switch string(s[j : i-1]) {
	case "in", "of", "than", "for", "after", "over", "about", "to", "within", "exceeded",
		"the", "only", "max", "maximum", "limit", "per", "is", "are", "at", "least", "most", "and", "or":
		return false
	}
	return true
}

func followedByStatus(s []byte, end int, class byte) bool {
	if end < len(s) && (s[end] == ' ' || s[end] == '-') {
		code, n := scanStatus(s, end+1)
		return n > end+1 && byte('0'+code.Class) == class
	}
	return false
}

// precededByCodeMarker reports whether s[:i] ends with a phrase after which
// remote servers put their reply code ("said: ", "smtp; ", "host x: ").
func precededByCodeMarker(s []byte, i int) bool {
	j := i
	for j > 0 && s[j-1] == ' ' {
		j--
	}
	if j == 0 {
		return true
	}
	switch s[j-1] {
	case ':', ';', '(', '[', '"', '<', '>', '#':
		return true
	}
	return false
}
