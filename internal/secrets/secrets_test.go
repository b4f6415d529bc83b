package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func mustKeyring(t testing.TB, s string) *Keyring {
	t.Helper()
	k, err := ParseKeyring(s)
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustKeyring(t, GenerateKey())
	ctx := []byte("acct-1/endpoint-7/standard-webhooks-secret")
	for _, plain := range [][]byte{
		[]byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
		{},
		bytes.Repeat([]byte{0, 1, 2, 255}, 1000),
	} {
		sealed, err := k.Seal(plain, ctx)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if !strings.HasPrefix(sealed, "v1:k1:") {
			t.Errorf("sealed %q does not start with v1:k1:", sealed)
		}
		got, err := k.Open(sealed, ctx)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("Open = %x, want %x", got, plain)
		}
	}
}

func TestSealIsRandomized(t *testing.T) {
	k := mustKeyring(t, GenerateKey())
	a, _ := k.Seal([]byte("same"), nil)
	b, _ := k.Seal([]byte("same"), nil)
	if a == b {
		t.Fatalf("two seals of the same value are identical: %q", a)
	}
}

func TestCiphertextNeverContainsPlaintext(t *testing.T) {
	k := mustKeyring(t, GenerateKey())
	plain := []byte("super-secret-signing-key-0123456789")
	for i := 0; i < 100; i++ {
		sealed, err := k.Seal(plain, []byte("ctx"))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(sealed[strings.LastIndex(sealed, ":")+1:])
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range [][]byte{plain, []byte(base64.StdEncoding.EncodeToString(plain)), []byte(base64.RawURLEncoding.EncodeToString(plain))} {
			if bytes.Contains([]byte(sealed), form) || bytes.Contains(raw, plain) {
				t.Fatalf("sealed value %q contains the plaintext (in some form)", sealed)
			}
		}
		// An 8-byte window of the plaintext would already be a leak.
		for j := 0; j+8 <= len(plain); j++ {
			if bytes.Contains(raw, plain[j:j+8]) {
				t.Fatalf("ciphertext contains plaintext bytes %q", plain[j:j+8])
			}
		}
	}
}

func TestRotation(t *testing.T) {
	oldKey, newKey := GenerateKey(), GenerateKey()
	before := mustKeyring(t, "old:"+oldKey)
	sealedOld, err := before.Seal([]byte("secret-a"), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}

	after := mustKeyring(t, "new:"+newKey+", old:"+oldKey)
	if got := after.KeyIDs(); strings.Join(got, ",") != "new,old" {
		t.Fatalf("KeyIDs = %v, want [new old]", got)
	}
	got, err := after.Open(sealedOld, []byte("c"))
	if err != nil || string(got) != "secret-a" {
		t.Fatalf("rotated keyring opens the old value: got %q, %v", got, err)
	}
	sealedNew, err := after.Seal([]byte("secret-b"), []byte("c"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealedNew, "v1:new:") {
		t.Fatalf("rotated keyring seals with %q, want the first key (new)", sealedNew)
	}
	// The old key alone cannot open what the new key sealed, and says why.
	_, err = before.Open(sealedNew, []byte("c"))
	if !errors.Is(err, ErrOpen) || !strings.Contains(err.Error(), `key "new"`) {
		t.Fatalf("old keyring on a new value: %v, want ErrOpen naming key \"new\"", err)
	}
	// After the old key is dropped, old values no longer open.
	onlyNew := mustKeyring(t, "new:"+newKey)
	if _, err := onlyNew.Open(sealedOld, []byte("c")); !errors.Is(err, ErrOpen) {
		t.Fatalf("dropped key still opens: %v", err)
	}
}

func TestOpenFailures(t *testing.T) {
	key := GenerateKey()
	k := mustKeyring(t, key)
	ctx := []byte("acct/ep/purpose")
	sealed, err := k.Seal([]byte("the secret"), ctx)
	if err != nil {
		t.Fatal(err)
	}
	otherKeySameID := mustKeyring(t, GenerateKey())

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	prefix := len("v1:k1:")
	cases := []struct {
		name   string
		ring   *Keyring
		sealed string
		ctx    []byte
	}{
		{"wrong context", k, sealed, []byte("acct/other-ep/purpose")},
		{"missing context", k, sealed, nil},
		{"wrong key", otherKeySameID, sealed, ctx},
		{"tampered nonce", k, flip(sealed, prefix+1), ctx},
		{"tampered ciphertext", k, flip(sealed, prefix+20), ctx},
		{"tampered tag", k, flip(sealed, len(sealed)-2), ctx},
		{"truncated", k, sealed[:len(sealed)-4], ctx},
		{"truncated to header", k, "v1:k1:", ctx},
		{"too short for nonce and tag", k, "v1:k1:" + base64.RawURLEncoding.EncodeToString(make([]byte, 27)), ctx},
		{"extra data", k, sealed + "AAAA", ctx},
		{"key id swapped", mustKeyring(t, "k1:"+key+",k2:"+key), "v1:k2:" + sealed[prefix:], ctx},
		{"unknown key id", k, "v1:k9:" + sealed[prefix:], ctx},
		{"bad version", k, "v2" + sealed[2:], ctx},
		{"not base64", k, "v1:k1:!!!!", ctx},
		{"empty", k, "", ctx},
		{"no data", k, "v1:k1", ctx},
		{"plaintext stored by mistake", k, "the secret", ctx},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ring.Open(tc.sealed, tc.ctx)
			if err == nil {
				t.Fatalf("Open succeeded with %q", got)
			}
			if !errors.Is(err, ErrOpen) {
				t.Errorf("error %v does not wrap ErrOpen", err)
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "the secret") {
				t.Errorf("error leaks key or plaintext: %v", err)
			}
		})
	}
}

func TestParseKeyringErrors(t *testing.T) {
	good := GenerateKey()
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "is empty"},
		{"blank", "   ", "is empty"},
		{"not base64", "not*base64*at*all", "not valid base64"},
		{"short key", short, "decodes to 16 bytes, want 32"},
		{"no id in a list", good + "," + good, "has no id"},
		{"empty id", ":" + good, "key id before ':' is empty"},
		{"bad id", "a b:" + good, "only letters, digits"},
		{"duplicate id", "a:" + good + ",a:" + good, `"a" appears twice`},
		{"empty key", "a:", "the key is empty"},
		{"trailing comma", "a:" + good + ",", "key 2 is empty (a stray comma?)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyring(tc.in)
			if err == nil {
				t.Fatalf("ParseKeyring(%q) succeeded", tc.in)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			if !strings.Contains(msg, "openssl rand -base64 32") && !strings.Contains(tc.name, "id") && tc.name != "trailing comma" {
				t.Errorf("error %q does not say how to make a key", msg)
			}
			if strings.Contains(msg, good) || strings.Contains(msg, short) {
				t.Errorf("error %q contains key material", msg)
			}
		})
	}
}

func TestParseKeyringForms(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(250 + i) // bytes that differ between the std and url alphabets
	}
	for name, s := range map[string]string{
		"std padded":   base64.StdEncoding.EncodeToString(raw),
		"std raw":      base64.RawStdEncoding.EncodeToString(raw),
		"url padded":   base64.URLEncoding.EncodeToString(raw),
		"url raw":      base64.RawURLEncoding.EncodeToString(raw),
		"with newline": base64.StdEncoding.EncodeToString(raw) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			k := mustKeyring(t, s)
			ref := mustKeyring(t, "k1:"+base64.StdEncoding.EncodeToString(raw))
			sealed, err := k.Seal([]byte("x"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ref.Open(sealed, nil); err != nil {
				t.Fatalf("%s form decodes to another key: %v", name, err)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	key := GenerateKey()
	k, err := FromEnv(func(name string) string {
		if name == EnvKey {
			return key
		}
		return ""
	})
	if err != nil || k.KeyIDs()[0] != "k1" {
		t.Fatalf("FromEnv: %v, %v", k, err)
	}
	_, err = FromEnv(func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), EnvKey) {
		t.Fatalf("FromEnv with nothing set: %v, want an error naming %s", err, EnvKey)
	}
}

func TestNilKeyring(t *testing.T) {
	var k *Keyring
	if _, err := k.Seal([]byte("x"), nil); err == nil {
		t.Error("nil keyring sealed")
	}
	if _, err := k.Open("v1:k1:AAAA", nil); !errors.Is(err, ErrOpen) {
		t.Errorf("nil keyring Open: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, "k1:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	good, _ := k.Seal([]byte("hello"), []byte("ctx"))
	f.Add(good, []byte("ctx"))
	f.Add("v1:k1:", []byte(nil))
	f.Add("v1::", []byte("x"))
	f.Add("v1:k1:"+strings.Repeat("A", 40), []byte("ctx"))
	f.Add(":::", []byte{})
	f.Fuzz(func(t *testing.T, sealed string, ctx []byte) {
		plain, err := k.Open(sealed, ctx)
		if err != nil {
			if !errors.Is(err, ErrOpen) {
				t.Fatalf("error does not wrap ErrOpen: %v", err)
			}
			return
		}
		// Anything that opens must be authentic: only our own seal of
		// "hello" under "ctx" is, short of breaking GCM.
		if string(plain) != "hello" || string(ctx) != "ctx" {
			t.Fatalf("forged input opened: %q -> %q", sealed, plain)
		}
	})
}

func ExampleKeyring() {
	ring, err := ParseKeyring("k2:" + GenerateKey() + ",k1:" + GenerateKey())
	if err != nil {
		panic(err)
	}
	sealed, _ := ring.Seal([]byte("whsec_..."), []byte("acct-1/ep-1/standard-webhooks"))
	plain, _ := ring.Open(sealed, []byte("acct-1/ep-1/standard-webhooks"))
	fmt.Println(strings.HasPrefix(sealed, "v1:k2:"), string(plain))
	_, err = ring.Open(sealed, []byte("acct-2/ep-1/standard-webhooks"))
	fmt.Println(err)
	// Output:
	// true whsec_...
	// cannot open sealed secret: authentication failed under key "k2" (wrong key or context, or the value was altered)
}

func BenchmarkSeal(b *testing.B) {
	k := mustKeyring(b, GenerateKey())
	plain := make([]byte, 32)
	for b.Loop() {
		if _, err := k.Seal(plain, []byte("acct/ep/purpose")); err != nil {
			b.Fatal(err)
		}
	}
}
