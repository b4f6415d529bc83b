package accounts

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Keys look like SendGrid's, so SendGrid's client libraries accept them:
// "SG." + key id (16 random bytes) + "." + secret (32 random bytes), both
// base64url without padding (no '.' in either); a key id never starts with
// '-' (keys made before this rule may: `bouncer keys revoke -- ID` takes them).
const keyPrefix = "SG."

// NewKey makes a key from rand. It returns the key to give the user once,
// its id, and the hash to store.
func NewKey(rand io.Reader) (key, keyID, hash string, err error) {
	var id [16]byte
	var secret [32]byte
	// A key id never starts with '-', so `bouncer keys revoke ID` cannot
	// read it as a flag: draw again (1 time in 64).
	for keyID == "" || keyID[0] == '-' {
		if _, err := io.ReadFull(rand, id[:]); err != nil {
			return "", "", "", fmt.Errorf("new key: %w", err)
		}
		keyID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	if _, err := io.ReadFull(rand, secret[:]); err != nil {
		return "", "", "", fmt.Errorf("new key: %w", err)
	}
	s := base64.RawURLEncoding.EncodeToString(secret[:])
	return keyPrefix + keyID + "." + s, keyID, HashSecret(s), nil
}

// HashSecret is the stored form of a key's secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseKey splits "SG.<key id>.<secret>".
func ParseKey(key string) (keyID, secret string, ok bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", "", false
	}
	keyID, secret, ok = strings.Cut(rest, ".")
	if !ok || keyID == "" || secret == "" || len(key) > 200 {
		return "", "", false
	}
	return keyID, secret, true
}

// ValidKeyID reports whether id can be a key id: 1 to 64 of base64url's
// alphabet (A-Z a-z 0-9 - _).
func ValidKeyID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
