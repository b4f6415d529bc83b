package schemas

import (
	"bytes"
	"unicode/utf8"
)

// Two levels of address checking:
//
//   - addressShape decides whether a value is an address at all. One that is
//     not is bad input (invalid_email). The event schema's email pattern says
//     the same thing.
//   - validAddress is the strict syntax check behind Event.AddressValid.

// isTrimSpace reports the ASCII white space trimmed from an address:
// tab, LF, VT, FF, CR and space.
func isTrimSpace(c byte) bool { return c == ' ' || 0x09 <= c && c <= 0x0d }

func trimSpace(v []byte) (lo, hi int) {
	lo, hi = 0, len(v)
	for lo < hi && isTrimSpace(v[lo]) {
		lo++
	}
	for hi > lo && isTrimSpace(v[hi-1]) {
		hi--
	}
	return lo, hi
}

// addressShape reports whether v, once trimmed, is local@domain with both
// parts non-empty (split at the last '@') and no space or control character
// (U+0000-U+0020, U+007F-U+009F) anywhere.
func addressShape(v []byte) bool {
	lo, hi := trimSpace(v)
	v = v[lo:hi]
	at := bytes.LastIndexByte(v, '@')
	if at <= 0 || at == len(v)-1 {
		return false
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			if c <= 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		if 0x80 <= r && r <= 0x9f {
			return false
		}
		i += size
	}
	return true
}

// atext are the characters of an RFC 5322 atom.
var atext = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-/=?^_`{|}~" {
		t[c] = true
	}
	return t
}()

// validAddress is the strict check: a dot-atom local part of 1-64 octets, a
// domain of 2 or more LDH labels (1-63 octets each, no leading or trailing
// hyphen, the last not all digits) of at most 253 octets, 254 octets in all.
// Quoted local parts, address literals and non-ASCII addresses fail it.
func validAddress(v []byte) bool {
	if len(v) > 254 {
		return false
	}
	at := bytes.IndexByte(v, '@')
	if at < 1 || at > 64 {
		return false
	}
	local, domain := v[:at], v[at+1:]
	prevDot := true // no leading dot
	for _, c := range local {
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !atext[c] {
			return false
		}
		prevDot = false
	}
	if prevDot {
		return false
	}
	if len(domain) == 0 || len(domain) > 253 {
		return false
	}
	labels := 0
	for len(domain) > 0 {
		n := bytes.IndexByte(domain, '.')
		var label []byte
		if n < 0 {
			label, domain = domain, nil
		} else {
			label, domain = domain[:n], domain[n+1:]
			if len(domain) == 0 {
				return false // trailing dot
			}
		}
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		digits := true
		for _, c := range label {
			switch {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-':
				digits = false
			default:
				return false
			}
		}
		labels++
		if domain == nil && digits {
			return false // numeric top label: an IP address, not a domain
		}
	}
	return labels >= 2
}

// needsLower reports whether lower-casing would change v: whether it holds
// an ASCII capital. Only ASCII letters are folded (see NormalizeAddress).
func needsLower(v []byte) bool {
	for _, c := range v {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// appendLower appends v with its ASCII capitals lower-cased; every other
// byte, UTF-8 sequences included, as it is.
func appendLower(dst, v []byte) []byte {
	for _, c := range v {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// LowerASCII returns s with its ASCII capitals lower-cased and every other
// character as it is: the only case folding bouncer applies to addresses.
func LowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return string(appendLower(make([]byte, 0, len(s)), []byte(s)))
		}
	}
	return s
}

// NormalizeAddress returns the form bouncer compares addresses in, the
// decoder's Event.EmailNorm: ASCII white space trimmed and ASCII capitals
// lower-cased, nothing else changed. Only ASCII case is folded: Unicode
// case folding maps some non-ASCII characters to ASCII ones (the Kelvin
// sign U+212A to k), which would make two different addresses one, so a
// non-ASCII character is never changed. ok is false for a value the
// decoder rejects as invalid_email (not local@domain with both parts
// non-empty, a space or control character) or that is not valid UTF-8; every
// address the pipeline stores is accepted, so the API, the suppression
// index and erasure can name each one.
func NormalizeAddress(raw string) (norm string, ok bool) {
	v := []byte(raw)
	if !utf8.Valid(v) || !addressShape(v) {
		return "", false
	}
	lo, hi := trimSpace(v)
	return string(appendLower(nil, v[lo:hi])), true
}

// ValidAccountID reports whether s is an account id: 1 to 64 of
// [A-Za-z0-9_.-] (events with another account_id are dead-lettered as
// invalid_account, and the commands refuse it).
func ValidAccountID(s string) bool { return validAccountID(s) }

func validAccountID[T string | []byte](v T) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
