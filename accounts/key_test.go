package accounts

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"
)

func TestParseKey(t *testing.T) {
	token, id, hash, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	gotID, secret, ok := ParseKey(token)
	if !ok || gotID != id || HashSecret(secret) != hash || len(token) != 69 {
		t.Errorf("NewKey %q (len %d) parses to %q, %v", token, len(token), gotID, ok)
	}
	for _, bad := range []string{"", "SG.", "SG.id", "SG..s", "SG.id.", "sg.id.s", "Bearer SG.a.b"} {
		if _, _, ok := ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

// A key id starting with '-' would read as a flag in `bouncer keys revoke
// ID`; NewKey draws again instead. 0xF8 encodes to a leading '-'.
func TestNewKeyIDNeverStartsWithADash(t *testing.T) {
	dashFirst := append([]byte{0xF8}, bytes.Repeat([]byte{1}, 15)...)
	next := append([]byte{0x10}, bytes.Repeat([]byte{2}, 15)...)
	secret := bytes.Repeat([]byte{3}, 32)
	r := bytes.NewReader(append(append(append([]byte(nil), dashFirst...), next...), secret...))
	_, id, _, err := NewKey(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(next); id != want {
		t.Fatalf("key id %q, want the second draw %q", id, want)
	}
	if first := base64.RawURLEncoding.EncodeToString(dashFirst); first[0] != '-' {
		t.Fatalf("test input %q should start with '-'", first)
	}
}

func TestValidKeyID(t *testing.T) {
	_, id, _, err := NewKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{id, "-q2x7wEjR0OTyQ9_4gS1xA", "a"} {
		if !ValidKeyID(ok) {
			t.Errorf("ValidKeyID(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "SG.x", string(make([]byte, 65))} {
		if ValidKeyID(bad) {
			t.Errorf("ValidKeyID(%q) = true", bad)
		}
	}
}
