package schemas

import "testing"

func TestMentionsAddress(t *testing.T) {
	const ann = "ann@x.example"
	for text, want := range map[string]bool{
		`{"email":"ann@x.example"}`:                      true,
		`{"email":"Ann@X.Example"}`:                      true,
		`{"email":"ann\u0040x.example"}`:                 true,
		`{"email":"\u0061nn\u0040x\u002Eexample"}`:       true,
		`{"email":"ann\/@x.example"}`:                    false,
		`{"email":"ann@x.example\/"}`:                    true,
		`{"reason":"550 <ann@x.example>: no such user"}`: true,
		`mail to ann@x.example.`:                         true,
		`ann@x.example`:                                  true,
		`{"email":"joann@x.example.org"}`:                false,
		`{"email":"joann@x.example"}`:                    false,
		`{"email":"x.ann@x.example"}`:                    false,
		`{"email":"ann@x.example.org"}`:                  false,
		`{"email":"ann@x.examples"}`:                     false,
		`{"email":"ann@x.example-1"}`:                    false,
		`{"email":"b@ann@x.example"}`:                    false,
		`{"email":"ann@x.example@y"}`:                    false,
		`{"email":"ann\\u0040x.example"}`:                false, // an escaped backslash, then text
		`{"email":"ann@x.ex\u0061mple"} joann@x.example`: true,
		`joann@x.example.org, ann@x.example.org`:         false,
		`joann@x.example.org, ann@x.example`:             true,
		`{"email":"änn@x.example"}`:                      false,
		`{"email":"ann@x.example\ud800"}`:                false,
		`\u00`:                                           false,
		``:                                               false,
	} {
		if got := MentionsAddress([]byte(text), ann); got != want {
			t.Errorf("%s: %v, want %v", text, got, want)
		}
	}
	kelvin := "\u212Aim@x.example"
	for text, want := range map[string]bool{
		`{"email":"\u212aim@x.example"}`: true,
		`{"email":"\u212AIM@X.example"}`: true,
		`{"email":"kim@x.example"}`:      false,
		`{"email":"KIM@x.example"}`:      false,
	} {
		if got := MentionsAddress([]byte(text), kelvin); got != want {
			t.Errorf("%s: %v, want %v (Kelvin sign)", text, got, want)
		}
	}
	if MentionsAddress([]byte(`{"email":"\u212Aim@x.example"}`), "kim@x.example") {
		t.Error("the Kelvin sign's address mentions kim@")
	}
}

func FuzzMentionsAddress(f *testing.F) {
	f.Add([]byte(`{"email":"ann\u0040x.example"}`), "ann@x.example")
	f.Add([]byte(`\ud83d\ude00 \u12`), "a@b")
	f.Fuzz(func(t *testing.T, text []byte, addr string) {
		norm, ok := NormalizeAddress(addr)
		if !ok {
			return
		}
		MentionsAddress(text, norm) // must not panic
		if !MentionsAddress([]byte(" "+norm+" "), norm) {
			t.Fatalf("%q does not mention itself", norm)
		}
	})
}

func TestMentionsAddressEscapeNext(t *testing.T) {
	for text, want := range map[string]bool{
		`{"email":"ann@x.example\u002eorg"}`: false,
		`{"email":"jo\u0061nn@x.example"}`:   false,
		`{"email":"ann@x.example\n"}`:        true,
	} {
		if got := MentionsAddress([]byte(text), "ann@x.example"); got != want {
			t.Errorf("%s: %v, want %v", text, got, want)
		}
	}
	if !MentionsAddress([]byte(`user 0@\b bounced`), `0@\b`) {
		t.Error(`an address with a backslash in plain text is not found`)
	}
}
