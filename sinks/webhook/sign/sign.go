// Package sign signs webhook requests with the two schemes bouncer offers,
// so that receivers can check a batch came from bouncer, unaltered:
//
//   - Standard Webhooks (https://www.standardwebhooks.com): the headers
//     webhook-id, webhook-timestamp and webhook-signature, the last holding
//     "v1,<base64 HMAC-SHA256 of id.timestamp.body>" for every signing secret
//     still valid, space separated, newest first. Secrets are shown to users
//     as "whsec_<base64>". While a secret is being rotated out the old one
//     keeps signing until its NotAfter, so receivers holding either secret
//     verify every request during the grace period (zero-downtime rotation,
//     as the specification describes).
//   - SendGrid's Signed Event Webhook: an ECDSA P-256 signature over
//     SHA-256(timestamp || body), base64 of its ASN.1 DER encoding, in
//     X-Twilio-Email-Event-Webhook-Signature, with the unix-seconds timestamp
//     in X-Twilio-Email-Event-Webhook-Timestamp. The public key is published
//     as base64 of its DER SubjectPublicKeyInfo, as SendGrid shows it, so
//     receivers written against SendGrid (for example with sendgrid-go's
//     helpers/eventwebhook) work unchanged.
//
// Both schemes sign exactly the bytes sent: callers must send body as given.
// Signing is deterministic for Standard Webhooks and randomized for ECDSA;
// both are safe for concurrent use. Nothing here logs or returns secret
// material in errors.
package sign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names, as the two schemes spell them.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"

	HeaderSendGridSignature = "X-Twilio-Email-Event-Webhook-Signature"
	HeaderSendGridTimestamp = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// SecretPrefix starts every Standard Webhooks secret shown to users.
const SecretPrefix = "whsec_"

// Secret sizes in bytes. The Standard Webhooks specification asks for at
// least 24 bytes (192 bits) and at most 64 (512 bits); new secrets get 32,
// the size of the HMAC-SHA256 output.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
	NewSecretBytes = 32
)

// Secret is one Standard Webhooks signing secret (the raw key bytes, the
// part of "whsec_<base64>" after the prefix, decoded), signing until
// NotAfter (zero: no end).
type Secret struct {
	Key      []byte
	NotAfter time.Time
}

// NewSecret returns a fresh random Standard Webhooks secret of
// NewSecretBytes bytes, valid without end (NotAfter zero).
func NewSecret() (Secret, error) {
	key := make([]byte, NewSecretBytes)
	if _, err := rand.Read(key); err != nil {
		return Secret{}, fmt.Errorf("new webhook secret: %w", err)
	}
	return Secret{Key: key}, nil
}

// FormatSecret returns a secret as users see it: "whsec_" + standard base64.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseSecret reads a secret in the form FormatSecret writes ("whsec_" and
// standard base64 of 24 to 64 bytes) and returns the key bytes.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New(`webhook secret is empty: give a secret like "whsec_" followed by base64 of 24 to 64 random bytes`)
	}
	encoded, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, errors.New(`webhook secret must start with "whsec_" followed by base64 of 24 to 64 random bytes`)
	}
	key, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, errors.New(`webhook secret is not valid: the part after "whsec_" must be standard base64 (A-Z, a-z, 0-9, '+', '/', '=' padding)`)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("webhook secret decodes to %d bytes; Standard Webhooks secrets are %d to %d bytes (try `openssl rand -base64 32` after \"whsec_\")",
			len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// secretValid reports whether a secret still signs at now.
func secretValid(s Secret, now time.Time) bool {
	return len(s.Key) > 0 && (s.NotAfter.IsZero() || s.NotAfter.After(now))
}

// Rotate returns the secrets after a rotation at now: next first (valid
// without end), then every secret that is still valid, each limited to sign
// for at most grace longer; expired secrets are dropped. The input is not
// modified.
func Rotate(secrets []Secret, next Secret, now time.Time, grace time.Duration) []Secret {
	out := []Secret{{Key: next.Key, NotAfter: next.NotAfter}}
	end := now.Add(grace)
	for _, s := range secrets {
		if !secretValid(s, now) {
			continue
		}
		if s.NotAfter.IsZero() || s.NotAfter.After(end) {
			s.NotAfter = end
		}
		if !s.NotAfter.After(now) {
			continue // grace zero: the old secret stops at once
		}
		out = append(out, s)
	}
	return out
}

// StandardSignature returns the webhook-signature header value:
// "v1,<base64 HMAC-SHA256(id.timestamp.body)>" for every secret still valid
// at now (NotAfter zero or after now), space separated, in the order given
// (newest first). It returns "" when no secret is valid. timestamp is
// ts.Unix() in decimal, as in the webhook-timestamp header.
func StandardSignature(id string, ts time.Time, body []byte, secrets []Secret, now time.Time) string {
	var prefix []byte
	prefix = append(prefix, id...)
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, ts.Unix(), 10)
	prefix = append(prefix, '.')

	var out []byte
	var sum [sha256.Size]byte
	for _, s := range secrets {
		if !secretValid(s, now) {
			continue
		}
		mac := hmac.New(sha256.New, s.Key)
		mac.Write(prefix)
		mac.Write(body)
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, mac.Sum(sum[:0]))
	}
	return string(out)
}

// NewSigningKey returns a fresh ECDSA P-256 key for SendGrid-style signing.
func NewSigningKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new signing key: %w", err)
	}
	return k, nil
}

// PublicKeyBase64 returns the public half of k as SendGrid shows it (its
// "public_key" field): standard base64 of the DER SubjectPublicKeyInfo.
// sendgrid-go's eventwebhook.ConvertPublicKeyBase64ToECDSA reads it.
func PublicKeyBase64(k *ecdsa.PrivateKey) (string, error) {
	if k == nil {
		return "", errors.New("public key: no signing key")
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// MarshalPrivateKey encodes k as PKCS #8 DER, for sealing at rest.
func MarshalPrivateKey(k *ecdsa.PrivateKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("marshal signing key: no key")
	}
	if k.Curve != elliptic.P256() {
		return nil, errors.New("marshal signing key: not a P-256 key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal signing key: %w", err)
	}
	return der, nil
}

// ParsePrivateKey reads a P-256 private key as MarshalPrivateKey writes it
// (PKCS #8 DER); SEC 1 ("EC PRIVATE KEY") DER and PEM forms of either are
// accepted too, so keys made with openssl can be imported.
func ParsePrivateKey(b []byte) (*ecdsa.PrivateKey, error) {
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	if len(b) == 0 {
		return nil, errors.New("parse signing key: empty input")
	}
	var key any
	key, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		ec, ecErr := x509.ParseECPrivateKey(b)
		if ecErr != nil {
			return nil, errors.New("parse signing key: not a PKCS #8 or SEC 1 EC private key (make one with `openssl ecparam -name prime256v1 -genkey -noout`)")
		}
		key = ec
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse signing key: a %T, want an ECDSA P-256 key", key)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("parse signing key: curve %s, want P-256", ec.Curve.Params().Name)
	}
	return ec, nil
}

// SendGridSignature returns the X-Twilio-Email-Event-Webhook-Signature value
// for body sent with timestamp ts: base64 of the ASN.1 DER ECDSA signature
// over SHA-256 of the decimal unix seconds followed by body.
func SendGridSignature(k *ecdsa.PrivateKey, ts time.Time, body []byte) (string, error) {
	if k == nil {
		return "", errors.New("sendgrid signature: no signing key")
	}
	h := sha256.New()
	h.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	h.Write(body)
	sig, err := ecdsa.SignASN1(rand.Reader, k, h.Sum(nil))
	if err != nil {
		return "", fmt.Errorf("sendgrid signature: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// VerifySendGrid checks a SendGrid Signed Event Webhook signature the way a
// receiver does: publicKey as PublicKeyBase64 returns it (and SendGrid
// shows it), timestamp as sent in the header. It exists for tests and the
// API's self-checks; delivery only signs.
func VerifySendGrid(publicKey, timestamp string, body []byte, signature string) error {
	der, err := base64.StdEncoding.DecodeString(publicKey)
	if err != nil {
		return errors.New("verify sendgrid signature: public key is not standard base64")
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return fmt.Errorf("verify sendgrid signature: public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return errors.New("verify sendgrid signature: public key is not ECDSA P-256")
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return errors.New("verify sendgrid signature: signature is not standard base64")
	}
	h := sha256.New()
	h.Write([]byte(timestamp))
	h.Write(body)
	if !ecdsa.VerifyASN1(ec, h.Sum(nil), sig) {
		return errors.New("verify sendgrid signature: signature does not match")
	}
	return nil
}

// checkID rejects webhook ids the Standard Webhooks scheme cannot carry
// safely: the signed content is "id.timestamp.body", so a '.' in the id
// would let one (id, timestamp) pair pass for another.
func checkID(id string) error {
	if id == "" {
		return errors.New("webhook-id is empty")
	}
	if len(id) > 256 {
		return errors.New("webhook-id is longer than 256 bytes")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == '.' || c <= ' ' || c >= 0x7f {
			return fmt.Errorf("webhook-id %q may hold only printable ASCII without '.' or spaces", id)
		}
	}
	return nil
}

// SetHeaders sets on h everything a signed delivery carries: Content-Type
// application/json; webhook-id and webhook-timestamp (always, so receivers
// can dedupe on the id); webhook-signature when one of secrets is valid at
// now; and the two X-Twilio-Email-Event-Webhook-* headers when key (the
// SendGrid signing key) is set. id must stay the same across retries of one
// batch; ts is the time of this attempt. Existing values of these headers
// are replaced; a header whose scheme is off is removed.
func SetHeaders(h http.Header, secrets []Secret, key *ecdsa.PrivateKey, id string, ts time.Time, body []byte, now time.Time) error {
	if err := checkID(id); err != nil {
		return fmt.Errorf("sign headers: %w", err)
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	h.Set("Content-Type", "application/json")
	h.Set(HeaderWebhookID, id)
	h.Set(HeaderWebhookTimestamp, unix)
	if sig := StandardSignature(id, ts, body, secrets, now); sig != "" {
		h.Set(HeaderWebhookSignature, sig)
	} else {
		h.Del(HeaderWebhookSignature)
	}
	if key != nil {
		sig, err := SendGridSignature(key, ts, body)
		if err != nil {
			return fmt.Errorf("sign headers: %w", err)
		}
		h.Set(HeaderSendGridSignature, sig)
		h.Set(HeaderSendGridTimestamp, unix)
	} else {
		h.Del(HeaderSendGridSignature)
		h.Del(HeaderSendGridTimestamp)
	}
	return nil
}
