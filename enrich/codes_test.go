package enrich

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestFindCodes(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		reply  uint16
		status string
	}{
		{"plain", "550 5.1.1 user unknown", 550, "5.1.1"},
		{"multi-line continuation", "550-5.1.1 The email account that you tried to reach does not exist. 550-5.1.1 Please try", 550, "5.1.1"},
		{"qmail hash form", "sorry, no mailbox here by that name. (#5.1.1)", 0, "5.1.1"},
		{"qmail with reply", "550 sorry, no mailbox here by that name (#5.1.1 - chkusr)", 550, "5.1.1"},
		{"postfix said", "host mx.example.com[192.0.2.1] said: 550 5.7.1 <a@example.com>: Relay access denied (in reply to RCPT TO command)", 550, "5.7.1"},
		{"dsn smtp prefix", "smtp; 552 5.2.2 mailbox full", 552, "5.2.2"},
		{"reply without enhanced code", "554 delivery error: dd This user doesn't have a yahoo.com account", 554, ""},
		{"ip address is not a code", "connect to 192.0.2.55[192.0.2.55]:25: Connection timed out", 0, ""},
		{"number in running text", "try again in 421 seconds", 0, ""},
		{"version is not a code", "Exim 4.96.1 rejected", 0, ""},
		{"microsoft extended detail", "550 5.7.606 Access denied, banned sending IP [192.0.2.1]", 550, "5.7.606"},
		{"four components are not a code", "host 5.1.1.1 unreachable", 0, ""},
		{"deferral", "451 4.7.1 Greylisting in action", 451, "4.7.1"},
		{"empty", "", 0, ""},
		{"code at very end", "rejected: 550", 550, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, status := findCodes(normalize(nil, tt.text))
			if reply != tt.reply || status.String() != tt.status {
				t.Errorf("findCodes(%q) = %d %q, want %d %q", tt.text, reply, status, tt.reply, tt.status)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"5.1.1", "5.1.1", true},
		{" 4.2.2 ", "4.2.2", true},
		{"#5.1.1", "5.1.1", true},
		{"5.7.606", "5.7.606", true},
		{"5.0.0", "5.0.0", true},
		{"550", "", false},
		{"5.1", "", false},
		{"6.1.1", "", false},
		{"5.1.1.1", "", false},
		{"5.1.1 user unknown", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseStatus(tt.in)
		if ok != tt.ok || got.String() != tt.want {
			t.Errorf("ParseStatus(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestStatusGeneric(t *testing.T) {
	for code, want := range map[string]bool{"5.0.0": true, "4.0.0": true, "5.0.910": true, "5.1.1": false, "5.0.1": false} {
		s, _ := ParseStatus(code)
		if s.Generic() != want {
			t.Errorf("%s.Generic() = %v, want %v", code, s.Generic(), want)
		}
	}
}

func TestNormalize(t *testing.T) {
	got := string(normalize(nil, "  550-5.1.1 User\r\n\tUNKNOWN  here "))
	if want := "550-5.1.1 user unknown here"; got != want {
		t.Errorf("normalize = %q, want %q", got, want)
	}
}

// normalizeRef is the plain definition normalizeText must agree with: runs
// of ASCII white space become one space, none at either end; runes are
// lower-cased with unicode.ToLower; invalid UTF-8 bytes pass through.
func normalizeRef(text string) (string, bool) {
	var b strings.Builder
	space, wide := false, false
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		c := text[i]
		i += size
		switch c {
		case ' ', '\t', '\n', '\r', '\f', '\v':
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		if c >= utf8.RuneSelf {
			wide = true
		}
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(c)
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String(), wide
}

// caseless may only claim runes that lower-case to themselves.
func TestCaselessRunesHaveNoLowerCase(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if caseless(r) && unicode.ToLower(r) != r {
			t.Fatalf("caseless(%U) but unicode.ToLower gives %U", r, unicode.ToLower(r))
		}
	}
}

func TestNormalizeAgreesWithDefinition(t *testing.T) {
	pieces := []string{"a", "Z", "q", "5", " ", "  ", "\t", "\r\n", "!", "É", "İ", "Ⱥ", "я", "Я", "漢", "\x00", "\xff", "\x01", "\x7f", "USER UNKNOWN", "mailbox full "}
	texts := corpusTexts(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for j := rng.IntN(30); j > 0; j-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		want, wantWide := normalizeRef(text)
		got, gotWide := normalizeText(nil, text)
		if string(got) != want || gotWide != wantWide {
			t.Fatalf("normalize(%q) = %q, %v; want %q, %v", text, got, gotWide, want, wantWide)
		}
		// Appending keeps what dst held.
		got2, _ := normalizeText([]byte("x"), text)
		if string(got2[1:]) != want || got2[0] != 'x' {
			t.Fatalf("normalize appended to %q: %q", "x", got2)
		}
	}
}

// FuzzNormalize holds normalizeText to its plain definition on any input.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"", "550 5.1.1 User Unknown", "  a\t\tB  ", "Boîte PLEINE", "\xff\x00 x", "ДЛЯ  ящик", "連絡しようとした"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		want, wantWide := normalizeRef(text)
		got, gotWide := normalizeText(nil, text)
		if string(got) != want || gotWide != wantWide {
			t.Fatalf("normalize(%q) = %q, %v; want %q, %v", text, got, gotWide, want, wantWide)
		}
	})
}

func TestNextCodeByte(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte("0123456789 .a\x00\xff\x80\xb2\xb4")
	for n := 0; n < 5000; n++ {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			s[i] = alphabet[rng.IntN(len(alphabet))]
		}
		for from := 0; from <= len(s); from++ {
			want := len(s)
			for i := from; i < len(s); i++ {
				if s[i] == '2' || s[i] == '4' || s[i] == '5' {
					want = i
					break
				}
			}
			if got := nextCodeByte(s, from); got != want {
				t.Fatalf("nextCodeByte(%q, %d) = %d, want %d", s, from, got, want)
			}
		}
	}
}
