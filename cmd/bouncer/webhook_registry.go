package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// Webhook subscriptions live in ClickHouse's webhooks table with their
// secrets sealed (internal/secrets) under BOUNCER_SECRET_KEY: the API seals
// them when it writes (api_webhooks.go), delivery opens them when it reads
// (the registry below). Each sealed value is bound to its account, its
// subscription id and its purpose, so a sealed value copied into another
// row does not open.

const (
	sealStandardSecret = "standard-webhooks-secret"
	sealSendGridKey    = "sendgrid-signing-key"
)

func webhookSealContext(account, id, purpose string) []byte {
	return []byte("bouncer-webhook\x00" + account + "\x00" + id + "\x00" + purpose)
}

// nextWebhookVersion is the version of a write derived from a row of
// version prev: the clock in nanoseconds, and above prev whatever the clock.
func nextWebhookVersion(prev uint64, now time.Time) uint64 {
	v := uint64(now.UnixNano())
	if v <= prev {
		v = prev + 1
	}
	return v
}

// webhookOpener opens the sealed parts of subscriptions. With a cache it
// remembers what it opened last time (by sealed value), so polling every
// few seconds costs no decryption or key parsing for unchanged rows.
type webhookOpener struct {
	keys *secrets.Keyring

	mu         sync.Mutex
	cache      map[string]any // sealed value -> []byte secret or *ecdsa key
	nextCache  map[string]any
	cacheAlive bool
}

// begin and end bracket one poll: entries not used during it are dropped,
// so the cache holds only current subscriptions.
func (o *webhookOpener) begin() {
	o.mu.Lock()
	o.cacheAlive, o.nextCache = true, map[string]any{}
	o.mu.Unlock()
}

func (o *webhookOpener) end() {
	o.mu.Lock()
	o.cache, o.nextCache, o.cacheAlive = o.nextCache, nil, false
	o.mu.Unlock()
}

// cached opens sealed (bound to context) with open, or returns what it
// opened before; the cache key holds the context too, so a sealed value
// copied into another row is opened (and refused) again.
func (o *webhookOpener) cached(context []byte, sealed string, open func() (any, error)) (any, error) {
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

// open returns the subscription of row with its secrets and key opened.
func (o *webhookOpener) open(row clickhouse.Webhook) (api.Webhook, error) {
	w := api.Webhook{
		Endpoint: webhook.Endpoint{
			ID: row.ID, AccountID: row.AccountID, URL: row.URL, Enabled: row.Enabled, Events: row.Events,
			DisabledAt: row.DisabledAt, DisabledReason: row.DisabledReason, UpdatedAt: row.Updated,
		},
		FriendlyName: row.FriendlyName, Created: row.Created, Version: row.Version,
	}
	if w.Events == nil {
		w.Events = map[string]bool{}
	}
	secretCtx := webhookSealContext(row.AccountID, row.ID, sealStandardSecret)
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
		w.Secrets = append(w.Secrets, webhook.Secret{Key: key})
	}
	if row.PrevSecretSealed != "" {
		key, err := openSecret(row.PrevSecretSealed)
		if err != nil {
			return w, fmt.Errorf("webhook %s: previous signing secret: %w", row.ID, err)
		}
		w.Secrets = append(w.Secrets, webhook.Secret{Key: key, NotAfter: row.PrevSecretNotAfter})
	}
	if row.Signed && row.SigningKeySealed != "" {
		keyCtx := webhookSealContext(row.AccountID, row.ID, sealSendGridKey)
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
		w.PublicKey = row.PublicKey
	}
	return w, nil
}

// seal returns the row storing w for account, secrets sealed, at version.
func (o *webhookOpener) seal(account string, w api.Webhook, version uint64) (clickhouse.Webhook, error) {
	row := clickhouse.Webhook{
		AccountID: account, ID: w.ID, Version: version, URL: w.URL, Enabled: w.Enabled, FriendlyName: w.FriendlyName,
		Events: w.Events, DisabledAt: w.DisabledAt, DisabledReason: w.DisabledReason, Created: w.Created, Updated: w.UpdatedAt,
	}
	secretCtx := webhookSealContext(account, w.ID, sealStandardSecret)
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
		if row.SigningKeySealed, err = o.keys.Seal(der, webhookSealContext(account, w.ID, sealSendGridKey)); err != nil {
			return row, err
		}
		row.Signed, row.PublicKey = true, w.PublicKey
		if row.PublicKey == "" {
			if row.PublicKey, err = sign.PublicKeyBase64(w.SignedKey); err != nil {
				return row, err
			}
		}
	}
	return row, nil
}

// webhookRegistry is delivery's view of every account's subscriptions.
type webhookRegistry struct {
	store  *clickhouse.Store
	opener *webhookOpener
	now    func() time.Time
}

// newWebhookRegistry returns delivery's registry: Endpoints reads every
// account's subscriptions in one query, with their secrets opened with
// keys (cheap enough to poll every couple of seconds: unchanged rows are not
// decrypted again), and DisableEndpoint records delivery giving up on one.
// A subscription whose secrets do not open with keys (a wrong
// BOUNCER_SECRET_KEY) is returned inactive, with DisabledReason saying so,
// rather than failing every account's deliveries.
func newWebhookRegistry(store *clickhouse.Store, keys *secrets.Keyring) webhook.Registry {
	return &webhookRegistry{store: store, opener: &webhookOpener{keys: keys}, now: time.Now}
}

func (r *webhookRegistry) Endpoints(ctx context.Context) ([]webhook.Endpoint, error) {
	rows, err := r.store.AllWebhooks(ctx)
	if err != nil {
		return nil, err
	}
	r.opener.begin()
	defer r.opener.end()
	out := make([]webhook.Endpoint, 0, len(rows))
	for _, row := range rows {
		w, err := r.opener.open(row)
		if err != nil {
			w.Enabled, w.Secrets, w.SignedKey = false, nil, nil
			if w.DisabledAt.IsZero() {
				w.DisabledAt = r.now()
			}
			w.DisabledReason = fmt.Sprintf("%v: is BOUNCER_SECRET_KEY the key (or keyring) the API sealed it with?", err)
		}
		out = append(out, w.Endpoint)
	}
	return out, nil
}

// DisableEndpoint marks the subscription disabled by delivery, once: an
// endpoint already disabled keeps its first time and reason; a deleted one
// stays deleted. The customer re-enables it with PATCH enabled=true.
func (r *webhookRegistry) DisableEndpoint(ctx context.Context, id string, at time.Time, reason string) error {
	row, ok, err := r.store.WebhookByID(ctx, id)
	if err != nil || !ok || !row.DisabledAt.IsZero() {
		return err
	}
	row.DisabledAt, row.DisabledReason, row.Updated = at, reason, at
	row.Version = nextWebhookVersion(row.Version, r.now())
	return r.store.WriteWebhook(ctx, row)
}

// webhookFlags are the flags of commands that keep or deliver webhooks.
type webhookFlags struct {
	key   *maskedFlag
	allow *string
}

// maskedFlag is a string flag whose value --help never prints.
type maskedFlag struct{ v string }

func (m *maskedFlag) String() string {
	if m == nil || m.v == "" {
		return ""
	}
	return "(set)"
}
func (m *maskedFlag) Set(s string) error { m.v = s; return nil }

func addWebhookFlags(e *envFlags) *webhookFlags {
	return &webhookFlags{
		key: addSecretKeyFlag(e),
		allow: e.String("webhook-allow-nets", safedial.EnvAllow, "", "`addresses and ports` webhook URLs may reach although they are "+
			"private, loopback or otherwise special: comma-separated host:port or host:first-last entries, host an IP, a CIDR "+
			"or an IPv6 one in brackets (e.g. 127.0.0.1:8080,10.20.0.0/16:443,[::1]:9000-9099); every entry names its ports, "+
			"so that webhooks cannot reach the other services on those networks. By default webhooks reach public addresses only"),
	}
}

// addSecretKeyFlag adds --secret-key (BOUNCER_SECRET_KEY).
func addSecretKeyFlag(e *envFlags) *maskedFlag {
	key := &maskedFlag{v: e.getenv(secrets.EnvKey)}
	e.fs.Var(key, "secret-key", e.usage("`keyring` sealing webhook signing secrets and keys at rest: a base64 32-byte key "+
		"(make one with: openssl rand -base64 32), or id:key,id:key newest first while rotating; the same on every api "+
		"and worker process. Prefer the environment variable (flags show in ps). Without it bouncer api serves "+
		"everything but the webhook routes, which answer 503 saying to set it, and bouncer worker runs no webhook group", secrets.EnvKey))
	return key
}

// keyring returns the keyring of the flags, nil when none was given.
func (f *webhookFlags) keyring() (*secrets.Keyring, error) {
	if f.key.v == "" {
		return nil, nil
	}
	k, err := secrets.ParseKeyring(f.key.v)
	if err != nil {
		return nil, &usageError{fmt.Sprintf("--secret-key / %s: %v", secrets.EnvKey, err)}
	}
	return k, nil
}

// guard returns the SSRF guard of the flags.
func (f *webhookFlags) guard() (safedial.Guard, error) {
	rules, err := safedial.ParseAllowList(*f.allow)
	if err != nil {
		return safedial.Guard{}, &usageError{fmt.Sprintf("--webhook-allow-nets / %v", err)}
	}
	return safedial.Guard{Allow: rules}, nil
}

// errNoSecretKey is what the webhook routes answer (503) without a keyring.
var errNoSecretKey = errors.New("webhooks are off on this server: bouncer api needs " + secrets.EnvKey +
	" to seal webhook signing secrets. Make a key with `openssl rand -base64 32`, set " + secrets.EnvKey +
	" to it (the same on every api and worker process) and restart bouncer api")

// The secrets command: make a key, and re-seal subscriptions after adding
// one (the part of key rotation only an operator can do: the API re-seals a
// subscription only when its account changes it).

func init() {
	register("secrets", "make a BOUNCER_SECRET_KEY, or re-seal webhook secrets under its newest key", runSecrets)
}

const secretsUsage = `
Usage:
  bouncer secrets generate
  bouncer secrets reseal [flags]

  bouncer secrets generate     # e.g. export BOUNCER_SECRET_KEY=$(bouncer secrets generate)

generate prints a new random key for BOUNCER_SECRET_KEY (32 bytes, base64),
the key webhook signing secrets and private keys are sealed with at rest.

reseal rewrites every webhook subscription that has a secret sealed under
another key than the first one of BOUNCER_SECRET_KEY, so that older keys can
be dropped. The secrets themselves do not change: receivers notice nothing.
To replace the key:

  1. set BOUNCER_SECRET_KEY=k2:<bouncer secrets generate>,k1:<current key>
     on every api and worker process and restart them (the first key seals,
     all open). Keep the current key's id: a key given alone has the id k1;
  2. BOUNCER_SECRET_KEY=k2:...,k1:... bouncer secrets reseal
  3. set BOUNCER_SECRET_KEY=k2:<the new key> everywhere and restart.

A subscription changed through the API while reseal runs keeps that change
(reseal's write loses to it).
`

func runSecrets(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || !(args[0] == "generate" || args[0] == "reseal" || args[0] == "--help" || args[0] == "-h") {
		return usagef("secrets: want generate or reseal (see bouncer secrets --help)")
	}
	sub := args[0]
	fs := newFlagSet(env, "secrets", secretsUsage)
	e := &envFlags{fs: fs, getenv: env.getenv}
	cf := addClickHouseFlags(e)
	wf := &webhookFlags{key: addSecretKeyFlag(e)}
	if sub == "--help" || sub == "-h" {
		return parseFlags(fs, env, args)
	}
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("secrets %s takes no arguments; got %q", sub, fs.Args())
	}
	if sub == "generate" {
		fmt.Fprintln(env.stdout, secrets.GenerateKey())
		return nil
	}
	if err := e.err(); err != nil {
		return err
	}
	keys, err := wf.keyring()
	if err != nil {
		return err
	}
	if keys == nil {
		return usagef("secrets reseal needs BOUNCER_SECRET_KEY: the new key first, then the old ones under their ids (k2:NEWKEY,k1:OLDKEY)")
	}
	cfg := cf.config()
	if err := cfg.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	store, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	n, total, err := resealWebhooks(ctx, store, keys)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "resealed %d of %d webhook subscriptions under key %q\n", n, total, keys.KeyIDs()[0])
	return nil
}

// resealWebhooks rewrites the subscriptions with a value sealed under
// another key than keys' first, and reports how many it rewrote of how
// many there are. Each write is one version above the row it read, so a
// change made meanwhile (with a clock-based version) wins over it.
func resealWebhooks(ctx context.Context, store *clickhouse.Store, keys *secrets.Keyring) (resealed, total int, err error) {
	rows, err := store.AllWebhooks(ctx)
	if err != nil {
		return 0, 0, err
	}
	current := keys.KeyIDs()[0]
	o := &webhookOpener{keys: keys}
	var out []clickhouse.Webhook
	for _, row := range rows {
		stale := false
		for _, sealed := range []string{row.SecretSealed, row.PrevSecretSealed, row.SigningKeySealed} {
			if sealed != "" && sealedKeyID(sealed) != current {
				stale = true
			}
		}
		if !stale {
			continue
		}
		w, err := o.open(row)
		if err != nil {
			return 0, len(rows), fmt.Errorf("account %s: %w", row.AccountID, err)
		}
		next, err := o.seal(row.AccountID, w, row.Version+1)
		if err != nil {
			return 0, len(rows), err
		}
		out = append(out, next)
	}
	if len(out) == 0 {
		return 0, len(rows), nil
	}
	return len(out), len(rows), store.WriteWebhooks(ctx, out)
}

// sealedKeyID is the key id of a sealed value ("v1:<key id>:...").
func sealedKeyID(sealed string) string {
	_, rest, _ := strings.Cut(sealed, ":")
	id, _, _ := strings.Cut(rest, ":")
	return id
}
