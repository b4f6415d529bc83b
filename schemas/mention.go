package schemas

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// MentionsAddress reports whether text (raw bytes: a rejected message, a
// webhook batch, free text) holds the address norm, a NormalizeAddress
// form, as a whole address: JSON escapes in text decoded first (so
// "ann\u0040x.example" counts), ASCII letters compared case-insensitively,
// and only where the address neither continues a longer one nor is
// continued by one. So "joann@x.example.org", "x.ann@x.example" and
// "ann@x.example.org" do not mention ann@x.example, while
// "<Ann@X.example>", "\"ann@x.example\"" and "mail ann@x.example." do.
// It is how erasure matches free text, so an erasure removes exactly the
// address's rows.
func MentionsAddress(text []byte, norm string) bool {
	if norm == "" {
		return false
	}
	if bytes.IndexByte(text, '\\') < 0 {
		return mentions(text, norm, false)
	}
	// With escapes decoded; and as it is, for text that is not JSON and
	// holds a backslash of its own (an address may), where a backslash
	// next to the match may start an escape that continues the address.
	return mentions(unescapeLoose(make([]byte, 0, len(text)), text), norm, false) || mentions(text, norm, true)
}

// mentions is MentionsAddress on one form of the text; escaped: a
// backslash beside a match continues it.
func mentions(text []byte, norm string, escaped bool) bool {
	if needsLower(text) {
		text = appendLower(make([]byte, 0, len(text)), text)
	}
	for off := 0; ; {
		i := bytes.Index(text[off:], []byte(norm))
		if i < 0 {
			return false
		}
		start, end := off+i, off+i+len(norm)
		before, after := text[:start], text[end:]
		if escaped && (len(before) > 0 && before[len(before)-1] == '\\' || len(after) > 0 && after[0] == '\\') {
			off = start + 1
			continue
		}
		if !continuesBefore(before) && !continuesAfter(after) {
			return true
		}
		off = start + 1
	}
}

// addressByte reports whether c can be part of an address next to the
// match: atext, dot, @, or a byte of a non-ASCII character.
func addressByte(c byte) bool {
	return atext[c] || c == '.' || c == '@' || c >= utf8.RuneSelf
}

// domainByte reports whether c can continue a domain label.
func domainByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c >= utf8.RuneSelf
}

// continuesBefore reports whether the text before a match ends in a
// character of a longer local part.
func continuesBefore(before []byte) bool {
	return len(before) > 0 && addressByte(before[len(before)-1])
}

// continuesAfter reports whether the text after a match continues the
// domain (or the address): a label character, '@', or a dot followed by a
// label character ("x.example.org"); a dot that ends a sentence does not.
func continuesAfter(after []byte) bool {
	if len(after) == 0 {
		return false
	}
	switch c := after[0]; {
	case c == '.':
		return len(after) > 1 && domainByte(after[1])
	case c == '@':
		return true
	default:
		return domainByte(c)
	}
}

// unescapeLoose appends src with its JSON escapes decoded, wherever they
// are (the text need not be valid JSON: dead letters often are not). A
// backslash that starts no valid escape is kept; a lone surrogate becomes
// U+FFFD, as the decoder makes it.
func unescapeLoose(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c != '\\' || i+1 == len(src) {
			dst = append(dst, c)
			continue
		}
		switch e := src[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
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
			if i+6 > len(src) || !isHex4(src[i+2:i+6]) {
				dst = append(dst, c)
				continue
			}
			r := hex4(src[i+2:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+8 <= len(src) && src[i+2] == '\\' && src[i+3] == 'u' && isHex4(src[i+4:i+8]) {
					r2 = hex4(src[i+4:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			dst = append(dst, c)
			continue
		}
		i++
	}
	return dst
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return len(b) == 4
}
