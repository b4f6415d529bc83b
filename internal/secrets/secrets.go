// Package secrets seals small secrets (webhook signing secrets, private keys)
// so that they can be stored in ClickHouse, where analysts have plain SQL
// access, without revealing them.
//
// Guarantees:
//
//   - A sealed value is AES-256-GCM ciphertext under a key that never leaves
//     the process environment (BOUNCER_SECRET_KEY); the stored string holds
//     only a version, the key id and base64url(nonce|ciphertext|tag). It never
//     contains the plaintext.
//   - Every seal uses a fresh random 96-bit nonce, so sealing the same value
//     twice gives different strings.
//   - A sealed value is bound to a context (GCM additional data, for example
//     "account/endpoint-id/purpose"): copying a sealed value into another row
//     makes Open fail instead of handing one account's secret to another.
//   - Open fails with an error, never a panic, on a wrong or unknown key,
//     a wrong context, and truncated, tampered or malformed input. Errors
//     never include key material or plaintext.
//   - Keys rotate: a keyring lists several keys newest first; the first one
//     seals, every one opens, so values sealed under an old key stay readable
//     until they are re-sealed.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// EnvKey is the environment variable holding the keyring.
const EnvKey = "BOUNCER_SECRET_KEY"

// KeySize is the size of one key in bytes (AES-256).
const KeySize = 32

// version is the prefix of every sealed string; a new format gets a new one.
const version = "v1"

// defaultKeyID is the id of a key given without one.
const defaultKeyID = "k1"

// howToMakeKey ends key errors with what to do about them.
const howToMakeKey = "make a key with `openssl rand -base64 32` and set " + EnvKey +
	` to it, or to "id1:NEWKEY,id2:OLDKEY" (newest first) to rotate keys`

// ErrOpen is wrapped by every error Open returns for input it cannot open
// (wrong key, wrong context, tampered or malformed input).
var ErrOpen = errors.New("cannot open sealed secret")

// Keyring holds the keys secrets are sealed with: the first seals, all open.
// It is safe for concurrent use.
type Keyring struct {
	ids   []string // in the order given, newest first
	aeads map[string]cipher.AEAD
}

// ParseKeyring reads a keyring: either "BASE64KEY" (one 32-byte key, id
// "k1") or "id1:BASE64KEY,id2:BASE64KEY" (newest first: the first seals, all
// open). Key ids are letters, digits, '-' and '_'. Standard and URL-safe
// base64, padded or not, are accepted.
func ParseKeyring(s string) (*Keyring, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%s is empty: %s", EnvKey, howToMakeKey)
	}
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	entries := strings.Split(s, ",")
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("%s: key %d is empty (a stray comma?); write keys as id1:BASE64KEY,id2:BASE64KEY", EnvKey, i+1)
		}
		id, encoded, hasID := strings.Cut(entry, ":")
		if !hasID {
			if len(entries) > 1 {
				return nil, fmt.Errorf("%s: key %d has no id; with several keys write each as id:BASE64KEY; %s", EnvKey, i+1, howToMakeKey)
			}
			id, encoded = defaultKeyID, entry
		}
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", EnvKey, i+1, err)
		}
		if _, dup := k.aeads[id]; dup {
			return nil, fmt.Errorf("%s: key id %q appears twice; give each key its own id", EnvKey, id)
		}
		key, err := decodeKey(encoded)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w; %s", EnvKey, id, err, howToMakeKey)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", EnvKey, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", EnvKey, id, err)
		}
		k.ids = append(k.ids, id)
		k.aeads[id] = aead
	}
	return k, nil
}

func checkKeyID(id string) error {
	if id == "" {
		return errors.New("the key id before ':' is empty")
	}
	if len(id) > 32 {
		return fmt.Errorf("key id %q is longer than 32 characters", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("key id %q may hold only letters, digits, '-' and '_'", id)
		}
	}
	return nil
}

// decodeKey decodes a base64 key without ever echoing it in an error.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("the key is empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("the key decodes to %d bytes, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("the key is not valid base64")
}

// KeyIDs returns the key ids, newest (the sealing key) first.
func (k *Keyring) KeyIDs() []string { return append([]string(nil), k.ids...) }

// Seal encrypts plaintext bound to context (additional data, for example
// "account/endpoint-id/purpose"), returning a printable string
// "v1:<key id>:<base64url(nonce|ciphertext)>". The same context must be given
// to Open.
func (k *Keyring) Seal(plaintext, context []byte) (string, error) {
	if k == nil || len(k.ids) == 0 {
		return "", errors.New("seal secret: no key configured; " + howToMakeKey)
	}
	id := k.ids[0]
	aead := k.aeads[id]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secret: read random nonce: %w", err)
	}
	out := aead.Seal(nonce, nonce, plaintext, additionalData(id, context))
	return version + ":" + id + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open reverses Seal. It fails, wrapping ErrOpen, on an unknown key id,
// a wrong key or context, and truncated, tampered or malformed input.
func (k *Keyring) Open(sealed string, context []byte) ([]byte, error) {
	if k == nil || len(k.ids) == 0 {
		return nil, fmt.Errorf("%w: no key configured; %s", ErrOpen, howToMakeKey)
	}
	ver, rest, ok := strings.Cut(sealed, ":")
	if !ok || ver != version {
		return nil, fmt.Errorf("%w: not a sealed value (want %q followed by a key id and data)", ErrOpen, version+":")
	}
	id, data, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, fmt.Errorf("%w: sealed value is truncated (no data after the key id)", ErrOpen)
	}
	aead, known := k.aeads[id]
	if !known {
		if checkKeyID(id) != nil {
			return nil, fmt.Errorf("%w: sealed value has a malformed key id", ErrOpen)
		}
		return nil, fmt.Errorf("%w: it was sealed with key %q, which %s does not hold (it has %s); add that key after the newest one",
			ErrOpen, id, EnvKey, strings.Join(k.ids, ", "))
	}
	raw, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("%w: sealed data is not valid base64url", ErrOpen)
	}
	if len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: sealed data is truncated", ErrOpen)
	}
	nonce, ciphertext := raw[:aead.NonceSize()], raw[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ciphertext, additionalData(id, context))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed under key %q (wrong key or context, or the value was altered)", ErrOpen, id)
	}
	if plain == nil {
		plain = []byte{}
	}
	return plain, nil
}

// additionalData binds the format version and key id as well as the
// caller's context, so that no part of the header can be swapped.
func additionalData(id string, context []byte) []byte {
	ad := make([]byte, 0, len(version)+len(id)+2+len(context))
	ad = append(ad, version...)
	ad = append(ad, ':')
	ad = append(ad, id...)
	ad = append(ad, ':')
	return append(ad, context...)
}

// GenerateKey returns a fresh random 32-byte key in standard base64, the
// form ParseKeyring reads (what `openssl rand -base64 32` prints).
func GenerateKey() string {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		// crypto/rand.Read does not fail on supported platforms (Go 1.24+
		// crashes the program rather than return an error).
		panic("secrets: read random key: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(key)
}

// FromEnv reads the keyring from EnvKey through getenv (os.Getenv in
// production). An unset variable is an error that says how to make a key.
func FromEnv(getenv func(string) string) (*Keyring, error) {
	return ParseKeyring(getenv(EnvKey))
}
