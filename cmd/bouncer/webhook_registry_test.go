package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// registryFixture is an API on a fresh database with a keyring, and the
// registry delivery would use.
type registryFixture struct {
	*webhookAPI
	keys   *secrets.Keyring
	rawKey string // the keyring's one key, id k1
	reg    *subscription.Registry
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db}
	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	st, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rawKey := secrets.GenerateKey()
	keys, err := secrets.ParseKeyring(rawKey)
	if err != nil {
		t.Fatal(err)
	}
	subs := subscription.NewService(st, keys, safedial.Guard{}, nil)
	srv := httptest.NewServer(api.NewServer(api.Config{Store: newAPIStore(st, nil), Keys: st, Webhooks: subs, RateLimit: 10000}))
	t.Cleanup(srv.Close)
	f := &webhookAPI{base: srv.URL, env: env, store: st, keyA: createKey(t, env, "acme"), keyB: createKey(t, env, "globex")}
	return &registryFixture{webhookAPI: f, keys: keys, rawKey: rawKey, reg: subscription.NewRegistry(st, keys)}
}

func (f *registryFixture) endpoint(t *testing.T, id string) (subscription.Webhook, bool) {
	t.Helper()
	eps, err := f.reg.Endpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps {
		if ep.ID == id {
			return ep, true
		}
	}
	return subscription.Webhook{}, false
}

// TestWebhookRegistryOnClickHouse: what the API writes, delivery's registry
// reads at once with the secrets opened (the same the API shows); rotation,
// signing, disabling by delivery and re-enabling by the customer all show;
// a deleted subscription leaves the registry and stays deleted.
func TestWebhookRegistryOnClickHouse(t *testing.T) {
	f := newRegistryFixture(t)
	const base = "/v3/user/webhooks/event/settings"
	var a, b webhookJSON
	f.must(t, 201, f.keyA, "POST", base, `{"url":"https://hooks.acme.example/e","bounce":true,"spam_report":true}`, &a)
	f.must(t, 201, f.keyB, "POST", base, `{"url":"https://hooks.globex.example/e","delivered":true,"enabled":false}`, &b)

	epA, ok := f.endpoint(t, a.ID)
	if !ok {
		t.Fatal("acme's subscription is not in the registry")
	}
	var sec secretJSON
	f.must(t, 200, f.keyA, "GET", "/bouncer/v1/webhooks/"+a.ID+"/secret", "", &sec)
	if epA.AccountID != "acme" || epA.URL != "https://hooks.acme.example/e" || !epA.Active() || !epA.Wants("bounce") ||
		!epA.Wants("spamreport") || epA.Wants("open") || len(epA.Secrets) != 1 || sign.FormatSecret(epA.Secrets[0].Key) != sec.Secret ||
		epA.SignedKey != nil {
		t.Errorf("acme's endpoint %+v; secret %q", epA, sec.Secret)
	}
	if epB, ok := f.endpoint(t, b.ID); !ok || epB.AccountID != "globex" || epB.Active() || !epB.Wants("delivered") {
		t.Errorf("globex's endpoint %+v (present %v), want inactive with delivered", epB, ok)
	}

	// Rotation: two secrets, newest first, the old one until the grace ends.
	var rot secretJSON
	f.must(t, 200, f.keyA, "POST", "/bouncer/v1/webhooks/"+a.ID+"/secret/rotate", `{"grace_period_seconds":600}`, &rot)
	epA, _ = f.endpoint(t, a.ID)
	until, _ := time.Parse(time.RFC3339, *rot.PreviousExpiresAt)
	if len(epA.Secrets) != 2 || sign.FormatSecret(epA.Secrets[0].Key) != rot.Secret || !epA.Secrets[0].NotAfter.IsZero() ||
		sign.FormatSecret(epA.Secrets[1].Key) != sec.Secret || !epA.Secrets[1].NotAfter.Equal(until) {
		t.Errorf("after rotation: %d secrets %+v", len(epA.Secrets), epA.Secrets)
	}

	// Signing on: the registry's key is the one whose public half the API shows.
	var pk struct {
		PublicKey string `json:"public_key"`
	}
	f.must(t, 200, f.keyA, "PATCH", base+"/signed/"+a.ID, `{"enabled":true}`, &pk)
	epA, _ = f.endpoint(t, a.ID)
	if epA.SignedKey == nil {
		t.Fatal("signing on: no key in the registry")
	}
	if got, _ := sign.PublicKeyBase64(epA.SignedKey); got != pk.PublicKey {
		t.Errorf("registry key's public half %q, API shows %q", got, pk.PublicKey)
	}

	// Delivery gives up: the API shows it disabled; a second disable keeps
	// the first reason; the customer's enable clears it.
	at := time.Now().UTC().Truncate(time.Second)
	if err := f.reg.DisableEndpoint(context.Background(), a.ID, at, "410 Gone"); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.DisableEndpoint(context.Background(), a.ID, at.Add(time.Minute), "later"); err != nil {
		t.Fatal(err)
	}
	epA, _ = f.endpoint(t, a.ID)
	if epA.Active() || !epA.DisabledAt.Equal(at) || epA.DisabledReason != "410 Gone" || epA.SignedKey == nil || len(epA.Secrets) != 2 {
		t.Errorf("disabled: active %v at %v reason %q (secrets and key must survive)", epA.Active(), epA.DisabledAt, epA.DisabledReason)
	}
	var got webhookJSON
	f.must(t, 200, f.keyA, "GET", base+"/"+a.ID, "", &got)
	if got.Enabled {
		t.Error("the API shows a subscription delivery disabled as enabled")
	}
	f.must(t, 200, f.keyA, "PATCH", base+"/"+a.ID, `{"enabled":true}`, &got)
	epA, _ = f.endpoint(t, a.ID)
	if !got.Enabled || !epA.Active() || !epA.DisabledAt.IsZero() || epA.DisabledReason != "" {
		t.Errorf("re-enabled: API %v, registry active %v at %v", got.Enabled, epA.Active(), epA.DisabledAt)
	}

	// Deleted: out of the registry, and a late disable does not bring it back.
	f.must(t, 204, f.keyA, "DELETE", base+"/"+a.ID, "", nil)
	if _, ok := f.endpoint(t, a.ID); ok {
		t.Error("a deleted subscription is still in the registry")
	}
	if err := f.reg.DisableEndpoint(context.Background(), a.ID, at, "late"); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.endpoint(t, a.ID); ok {
		t.Error("disabling a deleted subscription brought it back")
	}
	if _, ok := f.endpoint(t, b.ID); !ok {
		t.Error("globex's subscription went away with acme's")
	}
}

// TestWebhookRegistryWrongKey: a registry whose keyring did not seal a
// subscription returns it inactive, with a reason naming the key, and
// keeps every other subscription.
func TestWebhookRegistryWrongKey(t *testing.T) {
	f := newRegistryFixture(t)
	var a webhookJSON
	f.must(t, 201, f.keyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.acme.example/e","bounce":true}`, &a)
	other, err := secrets.ParseKeyring(secrets.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	eps, err := subscription.NewRegistry(f.store, other).Endpoints(context.Background())
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints %v %v", eps, err)
	}
	if ep := eps[0]; ep.Active() || ep.Secrets != nil || !strings.Contains(ep.DisabledReason, "BOUNCER_SECRET_KEY") {
		t.Errorf("with the wrong key: active %v secrets %v reason %q", ep.Active(), ep.Secrets, ep.DisabledReason)
	}
	// The API says which key is missing rather than "internal error".
	wrongSubs := subscription.NewService(f.store, other, safedial.Guard{}, nil)
	_, err = wrongSubs.Webhooks(context.Background(), "acme")
	var sealErr *subscription.SealError
	if !errors.As(err, &sealErr) || !strings.Contains(sealErr.Error(), "BOUNCER_SECRET_KEY") {
		t.Errorf("subscriptions with the wrong key: %v, want a SealError naming BOUNCER_SECRET_KEY", err)
	}
	wrongAPI := httptest.NewServer(api.NewServer(api.Config{Store: newAPIStore(f.store, nil), Keys: f.store, Webhooks: wrongSubs, RateLimit: 10000}))
	defer wrongAPI.Close()
	if code, body, _ := (&webhookAPI{base: wrongAPI.URL}).call(t, f.keyA, "GET", "/v3/user/webhooks/event/settings/all", ""); code != 500 ||
		!strings.Contains(body, "BOUNCER_SECRET_KEY") {
		t.Errorf("API with the wrong key: %d %s, want a 500 naming BOUNCER_SECRET_KEY", code, body)
	}

	// A sealed secret copied into another row does not open there.
	row, _, err := f.store.Webhook(context.Background(), "acme", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	row.AccountID, row.Version = "globex", row.Version+1
	if err := f.store.WriteWebhooks(context.Background(), []subscription.Sealed{row}); err != nil {
		t.Fatal(err)
	}
	eps, _ = f.reg.Endpoints(context.Background())
	for _, ep := range eps {
		if ep.AccountID == "globex" && (ep.Secrets != nil || ep.Active()) {
			t.Errorf("a secret copied to another account opened: %+v", ep)
		}
		if ep.AccountID == "acme" && len(ep.Secrets) != 1 {
			t.Errorf("acme's own row stopped opening: %+v", ep)
		}
	}
}

// BenchmarkWebhookRegistryEndpoints reports what one poll of the registry
// costs with 1000 subscriptions (200 accounts of 5), half of them signed:
// the first poll opens every secret; later ones reuse what they opened.
func BenchmarkWebhookRegistryEndpoints(b *testing.B) {
	addr := testenv.ClickHouse(b)
	db := testenv.Database(b, addr)
	cfg := clickhouse.Config{Addr: []string{addr}, Database: db}
	if _, err := clickhouse.Migrate(context.Background(), cfg); err != nil {
		b.Fatal(err)
	}
	st, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	keys, _ := secrets.ParseKeyring(secrets.GenerateKey())
	o := subscription.NewSealer(keys)
	var rows []subscription.Sealed
	for i := range 1000 {
		secret, _ := sign.NewSecret()
		w := subscription.Webhook{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), URL: "https://hooks.example/" + fmt.Sprint(i),
			Enabled: true, Events: map[string]bool{"bounce": true}, Secrets: []sign.Secret{secret}, UpdatedAt: time.Now(), Created: time.Now()}
		if i%2 == 0 {
			var k *ecdsa.PrivateKey
			k, _ = sign.NewSigningKey()
			w.SignedKey = k
		}
		row, err := o.Seal(fmt.Sprintf("account-%03d", i/5), w, 1)
		if err != nil {
			b.Fatal(err)
		}
		rows = append(rows, row)
	}
	if err := st.WriteWebhooks(context.Background(), rows); err != nil {
		b.Fatal(err)
	}
	reg := subscription.NewRegistry(st, keys)
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			cold := subscription.NewRegistry(st, keys) // nothing opened yet
			if eps, err := cold.Endpoints(context.Background()); err != nil || len(eps) != 1000 {
				b.Fatal(len(eps), err)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		reg.Endpoints(context.Background())
		for b.Loop() {
			if eps, err := reg.Endpoints(context.Background()); err != nil || len(eps) != 1000 {
				b.Fatal(len(eps), err)
			}
		}
	})
}

// TestSecretsReseal: after a new key is put first in the keyring, `bouncer
// secrets reseal` rewrites the subscriptions sealed under the old one, so
// that a keyring of the new key alone opens them, with the same secrets;
// a second run has nothing to do.
func TestSecretsReseal(t *testing.T) {
	f := newRegistryFixture(t) // seals under k1
	var a webhookJSON
	f.must(t, 201, f.keyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.acme.example/e","bounce":true}`, &a)
	f.must(t, 200, f.keyA, "PATCH", "/v3/user/webhooks/event/settings/signed/"+a.ID, `{"enabled":true}`, nil)
	f.must(t, 200, f.keyA, "POST", "/bouncer/v1/webhooks/"+a.ID+"/secret/rotate", "", nil)
	before, ok := f.endpoint(t, a.ID)
	if !ok || len(before.Secrets) != 2 || before.SignedKey == nil {
		t.Fatalf("before: %+v", before)
	}

	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "secrets", "generate"}, envFunc(nil), strings.NewReader(""), &out, &out); err != nil {
		t.Fatal(err)
	}
	newKey := strings.TrimSpace(out.String())
	env := map[string]string{"CLICKHOUSE_ADDR": f.env["CLICKHOUSE_ADDR"], "CLICKHOUSE_DATABASE": f.env["CLICKHOUSE_DATABASE"],
		secrets.EnvKey: "k2:" + newKey + "," + "k1:" + f.rawKey}
	for i, want := range []string{`resealed 1 of 1 webhook subscriptions under key "k2"`, `resealed 0 of 1`} {
		out = syncBuffer{}
		if err := run(context.Background(), []string{"bouncer", "secrets", "reseal"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
			t.Fatalf("reseal %d: %v\n%s", i+1, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("reseal %d said %q, want %q", i+1, out.String(), want)
		}
	}
	// The old key under another id than it had: reseal says which key it needs.
	out = syncBuffer{}
	env[secrets.EnvKey] = "k3:" + secrets.GenerateKey() + ",old:" + newKey
	if err := run(context.Background(), []string{"bouncer", "secrets", "reseal"}, envFunc(env), strings.NewReader(""), &out, &out); err == nil ||
		!strings.Contains(err.Error(), `"k2"`) || strings.Contains(out.String(), "resealed") {
		t.Errorf("reseal with the old key misnamed: %v, output %q", err, out.String())
	}
	onlyNew, err := secrets.ParseKeyring("k2:" + newKey)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := subscription.NewRegistry(f.store, onlyNew).Endpoints(context.Background())
	if err != nil || len(eps) != 1 {
		t.Fatalf("%v %v", eps, err)
	}
	after := eps[0]
	if !after.Active() || len(after.Secrets) != 2 || string(after.Secrets[0].Key) != string(before.Secrets[0].Key) ||
		string(after.Secrets[1].Key) != string(before.Secrets[1].Key) || !after.Secrets[1].NotAfter.Equal(before.Secrets[1].NotAfter) ||
		after.SignedKey == nil || !after.SignedKey.Equal(before.SignedKey) {
		t.Errorf("after reseal, with the new key alone: %+v", after)
	}

	if err := run(context.Background(), []string{"bouncer", "secrets", "reseal"}, envFunc(map[string]string{"CLICKHOUSE_ADDR": f.env["CLICKHOUSE_ADDR"]}),
		strings.NewReader(""), &out, &out); err == nil || !strings.Contains(err.Error(), "BOUNCER_SECRET_KEY") {
		t.Errorf("reseal without a key: %v", err)
	}
}
