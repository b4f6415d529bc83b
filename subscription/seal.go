package subscription

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// Purposes a sealed value is bound to, beside its account and id.
const (
	sealStandardSecret = "standard-webhooks-secret"
	sealSendGridKey    = "sendgrid-signing-key"
	sealOAuthSecret    = "oauth-client-secret"
)

func sealContext(account, id, purpose string) []byte {
	return []byte("bouncer-webhook\x00" + account + "\x00" + id + "\x00" + purpose)
}

// ErrNoKey is what the webhook routes answer (503) when the server has no
// keyring to seal secrets with.
var ErrNoKey = errors.New("webhooks are off on this server: bouncer api needs " + secrets.EnvKey +
	" to seal webhook signing secrets. Make a key with `openssl rand -base64 32`, set " + secrets.EnvKey +
	" to it (the same on every api and worker process) and restart bouncer api")

// Sealer seals the secrets of subscriptions with a keyring and opens them
// again. Between Begin and End it remembers what it opened (by sealed
// value and the context it is bound to), so polling every few seconds
// costs no decryption or key parsing for unchanged rows. Safe for
// concurrent use.
type Sealer struct {
	keys *secrets.Keyring

	mu         sync.Mutex
	cache      map[string]any // context + sealed value -> []byte secret or *ecdsa key
	nextCache  map[string]any
	cacheAlive bool
}

// NewSealer returns a Sealer with keys (the first seals, all open).
func NewSealer(keys *secrets.Keyring) *Sealer { return &Sealer{keys: keys} }

// Begin and End bracket one poll: entries not used during it are dropped,
// so the cache holds only current subscriptions.
func (o *Sealer) Begin() {
	o.mu.Lock()
	o.cacheAlive, o.nextCache = true, map[string]any{}
	o.mu.Unlock()
}

// End: see Begin.
func (o *Sealer) End() {
	o.mu.Lock()
	o.cache, o.nextCache, o.cacheAlive = o.nextCache, nil, false
	o.mu.Unlock()
}

// cached opens sealed (bound to context) with open, or returns what it
// opened before; the cache key holds the context too, so a sealed value
// copied into another row is opened (and refused) again.
func (o *Sealer) cached(context []byte, sealed string, open func() (any, error)) (any, error) {
	ck := string(context) + "\x00" + sealed
	o.mu.Lock()
	v, ok := o.cache[ck]
	alive := o.cacheAlive
	o.mu.Unlock()
	if !ok {
		var err error
		if v, err = open(); err != nil {
			return nil, err
		}
	}
	if alive {
		o.mu.Lock()
		if o.nextCache != nil {
			o.nextCache[ck] = v
		}
		o.mu.Unlock()
	}
	return v, nil
}

// Open returns the subscription of row with its secrets and key opened. On
// error the returned Webhook still holds every field but the secrets.
func (o *Sealer) Open(row Sealed) (Webhook, error) {
	w := row.Webhook
	w.Secrets, w.SignedKey, w.OAuth = nil, nil, row.oauthWithoutSecret()
	if w.Events == nil {
		w.Events = map[string]bool{}
	}
	if !row.Signed || row.SigningKeySealed == "" {
		w.PublicKey = ""
	}
	secretCtx := sealContext(row.AccountID, row.ID, sealStandardSecret)
	openSecret := func(sealed string) ([]byte, error) {
		v, err := o.cached(secretCtx, sealed, func() (any, error) { return o.keys.Open(sealed, secretCtx) })
		if err != nil {
			return nil, err
		}
		return v.([]byte), nil
	}
	if row.SecretSealed != "" {
		key, err := openSecret(row.SecretSealed)
		if err != nil {
			return w, fmt.Errorf("webhook %s: signing secret: %w", row.ID, err)
		}
		w.Secrets = append(w.Secrets, sign.Secret{Key: key})
	}
	if row.PrevSecretSealed != "" {
		key, err := openSecret(row.PrevSecretSealed)
		if err != nil {
			return w, fmt.Errorf("webhook %s: previous signing secret: %w", row.ID, err)
		}
		w.Secrets = append(w.Secrets, sign.Secret{Key: key, NotAfter: row.PrevSecretNotAfter})
	}
	if row.Signed && row.SigningKeySealed != "" {
		keyCtx := sealContext(row.AccountID, row.ID, sealSendGridKey)
		v, err := o.cached(keyCtx, row.SigningKeySealed, func() (any, error) {
			der, err := o.keys.Open(row.SigningKeySealed, keyCtx)
			if err != nil {
				return nil, err
			}
			return sign.ParsePrivateKey(der)
		})
		if err != nil {
			return w, fmt.Errorf("webhook %s: SendGrid signing key: %w", row.ID, err)
		}
		w.SignedKey = v.(*ecdsa.PrivateKey)
	}
	if w.OAuth != nil && row.OAuthSecretSealed != "" {
		oauthCtx := sealContext(row.AccountID, row.ID, sealOAuthSecret)
		v, err := o.cached(oauthCtx, row.OAuthSecretSealed, func() (any, error) { return o.keys.Open(row.OAuthSecretSealed, oauthCtx) })
		if err != nil {
			return w, fmt.Errorf("webhook %s: OAuth client secret: %w", row.ID, err)
		}
		w.OAuth.ClientSecret = string(v.([]byte))
	}
	return w, nil
}

// oauthWithoutSecret is the row's OAuth settings without the client secret
// (nil without OAuth).
func (row *Sealed) oauthWithoutSecret() *OAuth {
	if row.OAuthClientID == "" && row.OAuthTokenURL == "" {
		return nil
	}
	return &OAuth{ClientID: row.OAuthClientID, TokenURL: row.OAuthTokenURL}
}

// Seal returns the row storing w for account, secrets sealed, at version.
// w needs at least one secret.
func (o *Sealer) Seal(account string, w Webhook, version uint64) (Sealed, error) {
	row := Sealed{Webhook: w}
	row.AccountID, row.Version = account, version
	row.Secrets, row.SignedKey, row.PublicKey, row.OAuth = nil, nil, "", nil
	secretCtx := sealContext(account, w.ID, sealStandardSecret)
	if len(w.Secrets) == 0 {
		return row, fmt.Errorf("webhook %s: no signing secret to store", w.ID)
	}
	var err error
	if row.SecretSealed, err = o.keys.Seal(w.Secrets[0].Key, secretCtx); err != nil {
		return row, err
	}
	if len(w.Secrets) > 1 {
		if row.PrevSecretSealed, err = o.keys.Seal(w.Secrets[1].Key, secretCtx); err != nil {
			return row, err
		}
		row.PrevSecretNotAfter = w.Secrets[1].NotAfter
	}
	if w.SignedKey != nil {
		der, err := sign.MarshalPrivateKey(w.SignedKey)
		if err != nil {
			return row, err
		}
		if row.SigningKeySealed, err = o.keys.Seal(der, sealContext(account, w.ID, sealSendGridKey)); err != nil {
			return row, err
		}
		row.Signed, row.PublicKey = true, w.PublicKey
		if row.PublicKey == "" {
			if row.PublicKey, err = sign.PublicKeyBase64(w.SignedKey); err != nil {
				return row, err
			}
		}
	}
	if w.OAuth != nil {
		if w.OAuth.ClientID == "" || w.OAuth.TokenURL == "" || w.OAuth.ClientSecret == "" {
			return row, fmt.Errorf("webhook %s: OAuth needs a client id, a client secret and a token URL", w.ID)
		}
		row.OAuthClientID, row.OAuthTokenURL = w.OAuth.ClientID, w.OAuth.TokenURL
		if row.OAuthSecretSealed, err = o.keys.Seal([]byte(w.OAuth.ClientSecret), sealContext(account, w.ID, sealOAuthSecret)); err != nil {
			return row, err
		}
	}
	return row, nil
}

// sealedKeyID is the key id of a sealed value ("v1:<key id>:...").
func sealedKeyID(sealed string) string {
	_, rest, _ := strings.Cut(sealed, ":")
	id, _, _ := strings.Cut(rest, ":")
	return id
}
