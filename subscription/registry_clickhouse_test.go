package subscription_test

// Integration tests of the registry and resealing on real ClickHouse:
// subscriptions are made through the API (in-process, internal/apitest), as
// customers make them, and read back as delivery reads them.

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
	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// registryFixture is an API on a fresh database with a keyring, and the
// registry delivery would use.
type registryFixture struct {
	api    *apitest.API
	keys   *secrets.Keyring
	rawKey string // the keyring's one key, id k1
	reg    *subscription.Registry
}

func newRegistryFixture(t *testing.T) *registryFixture {
	t.Helper()
	rawKey := secrets.GenerateKey()
	keys, err := secrets.ParseKeyring(rawKey)
	if err != nil {
		t.Fatal(err)
	}
	a := apitest.Start(t, apitest.Options{Webhooks: func(st *clickhouse.Store) *subscription.Service {
		return subscription.NewService(st, keys, safedial.Guard{}, nil)
	}})
	return &registryFixture{api: a, keys: keys, rawKey: rawKey, reg: subscription.NewRegistry(a.Store, keys)}
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

type webhookJSON struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
}

type secretJSON struct {
	Secret            string  `json:"secret"`
	PreviousExpiresAt *string `json:"previous_secret_expires_at"`
}

// TestWebhookRegistryOnClickHouse: what the API writes, delivery's registry
// reads at once with the secrets opened (the same the API shows); rotation,
// signing, disabling by delivery and re-enabling by the customer all show;
// a deleted subscription leaves the registry and stays deleted.
func TestWebhookRegistryOnClickHouse(t *testing.T) {
	f := newRegistryFixture(t)
	const base = "/v3/user/webhooks/event/settings"
	var a, b webhookJSON
	f.api.Must(t, 201, f.api.KeyA, "POST", base, `{"url":"https://hooks.acme.example/e","bounce":true,"spam_report":true}`, &a)
	f.api.Must(t, 201, f.api.KeyB, "POST", base, `{"url":"https://hooks.globex.example/e","delivered":true,"enabled":false}`, &b)

	epA, ok := f.endpoint(t, a.ID)
	if !ok {
		t.Fatal("acme's subscription is not in the registry")
	}
	var sec secretJSON
	f.api.Must(t, 200, f.api.KeyA, "GET", "/bouncer/v1/webhooks/"+a.ID+"/secret", "", &sec)
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
	f.api.Must(t, 200, f.api.KeyA, "POST", "/bouncer/v1/webhooks/"+a.ID+"/secret/rotate", `{"grace_period_seconds":600}`, &rot)
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
	f.api.Must(t, 200, f.api.KeyA, "PATCH", base+"/signed/"+a.ID, `{"enabled":true}`, &pk)
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
	f.api.Must(t, 200, f.api.KeyA, "GET", base+"/"+a.ID, "", &got)
	if got.Enabled {
		t.Error("the API shows a subscription delivery disabled as enabled")
	}
	f.api.Must(t, 200, f.api.KeyA, "PATCH", base+"/"+a.ID, `{"enabled":true}`, &got)
	epA, _ = f.endpoint(t, a.ID)
	if !got.Enabled || !epA.Active() || !epA.DisabledAt.IsZero() || epA.DisabledReason != "" {
		t.Errorf("re-enabled: API %v, registry active %v at %v", got.Enabled, epA.Active(), epA.DisabledAt)
	}

	// Deleted: out of the registry, and a late disable does not bring it back.
	f.api.Must(t, 204, f.api.KeyA, "DELETE", base+"/"+a.ID, "", nil)
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
	f.api.Must(t, 201, f.api.KeyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.acme.example/e","bounce":true}`, &a)
	other, err := secrets.ParseKeyring(secrets.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	eps, err := subscription.NewRegistry(f.api.Store, other).Endpoints(context.Background())
	if err != nil || len(eps) != 1 {
		t.Fatalf("endpoints %v %v", eps, err)
	}
	if ep := eps[0]; ep.Active() || ep.Secrets != nil || !strings.Contains(ep.DisabledReason, "BOUNCER_SECRET_KEY") {
		t.Errorf("with the wrong key: active %v secrets %v reason %q", ep.Active(), ep.Secrets, ep.DisabledReason)
	}
	// The API says which key is missing rather than "internal error".
	wrongSubs := subscription.NewService(f.api.Store, other, safedial.Guard{}, nil)
	_, err = wrongSubs.Webhooks(context.Background(), "acme")
	var sealErr *subscription.SealError
	if !errors.As(err, &sealErr) || !strings.Contains(sealErr.Error(), "BOUNCER_SECRET_KEY") {
		t.Errorf("subscriptions with the wrong key: %v, want a SealError naming BOUNCER_SECRET_KEY", err)
	}
	wrongAPI := httptest.NewServer(api.NewServer(api.Config{Store: api.ListStore{Service: suppression.NewService(f.api.Store, nil, nil), Counts: f.api.Store},
		Keys: f.api.Store, Webhooks: wrongSubs, RateLimit: 10000}))
	defer wrongAPI.Close()
	if code, body, _ := apitest.Call(t, wrongAPI.URL, f.api.KeyA, "GET", "/v3/user/webhooks/event/settings/all", ""); code != 500 ||
		!strings.Contains(body, "BOUNCER_SECRET_KEY") {
		t.Errorf("API with the wrong key: %d %s, want a 500 naming BOUNCER_SECRET_KEY", code, body)
	}

	// A sealed secret copied into another row does not open there.
	row, _, err := f.api.Store.Webhook(context.Background(), "acme", a.ID)
	if err != nil {
		t.Fatal(err)
	}
	row.AccountID, row.Version = "globex", row.Version+1
	if err := f.api.Store.WriteWebhooks(context.Background(), []subscription.Sealed{row}); err != nil {
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
	st := apitest.Store(b, clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(b, addr)})
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

// TestSecretsReseal: after a new key is put first in the keyring, Reseal
// (bouncer secrets reseal) rewrites the subscriptions sealed under the old
// one, so that a keyring of the new key alone opens them, with the same
// secrets; a second run has nothing to do; with the old key under another
// id it says which key it needs. (The command's output is tested in
// cmd/bouncer.)
func TestSecretsReseal(t *testing.T) {
	f := newRegistryFixture(t) // seals under k1
	var a webhookJSON
	f.api.Must(t, 201, f.api.KeyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.acme.example/e","bounce":true}`, &a)
	f.api.Must(t, 200, f.api.KeyA, "PATCH", "/v3/user/webhooks/event/settings/signed/"+a.ID, `{"enabled":true}`, nil)
	f.api.Must(t, 200, f.api.KeyA, "POST", "/bouncer/v1/webhooks/"+a.ID+"/secret/rotate", "", nil)
	f.api.Must(t, 201, f.api.KeyA, "POST", "/v3/user/webhooks/security/policies",
		`{"name":"p","oauth":{"client_id":"c","client_secret":"policy-secret","token_url":"https://auth.acme.example/t"},"signature":{"enabled":true}}`, nil)
	before, ok := f.endpoint(t, a.ID)
	if !ok || len(before.Secrets) != 2 || before.SignedKey == nil {
		t.Fatalf("before: %+v", before)
	}
	ctx := context.Background()
	newKey := secrets.GenerateKey()
	both, err := secrets.ParseKeyring("k2:" + newKey + "," + "k1:" + f.rawKey)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][2]int{{1, 1}, {0, 1}} {
		n, total, err := subscription.Reseal(ctx, f.api.Store, both)
		if err != nil || n != want[0] || total != want[1] || both.KeyIDs()[0] != "k2" {
			t.Errorf("reseal %d: %d of %d under %q (%v), want %d of %d under k2", i+1, n, total, both.KeyIDs()[0], err, want[0], want[1])
		}
		n, total, err = subscription.ResealPolicies(ctx, f.api.Store, both)
		if err != nil || n != want[0] || total != want[1] {
			t.Errorf("reseal policies %d: %d of %d (%v), want %d of %d", i+1, n, total, err, want[0], want[1])
		}
	}
	// The old key under another id than it had: reseal says which key it needs.
	misnamed, err := secrets.ParseKeyring("k3:" + secrets.GenerateKey() + ",old:" + newKey)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := subscription.Reseal(ctx, f.api.Store, misnamed); err == nil || !strings.Contains(err.Error(), `"k2"`) || n != 0 {
		t.Errorf("reseal with the old key misnamed: %d resealed, %v", n, err)
	}
	onlyNew, err := secrets.ParseKeyring("k2:" + newKey)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := subscription.NewRegistry(f.api.Store, onlyNew).Endpoints(ctx)
	if err != nil || len(eps) != 1 {
		t.Fatalf("%v %v", eps, err)
	}
	after := eps[0]
	if !after.Active() || len(after.Secrets) != 2 || string(after.Secrets[0].Key) != string(before.Secrets[0].Key) ||
		string(after.Secrets[1].Key) != string(before.Secrets[1].Key) || !after.Secrets[1].NotAfter.Equal(before.Secrets[1].NotAfter) ||
		after.SignedKey == nil || !after.SignedKey.Equal(before.SignedKey) {
		t.Errorf("after reseal, with the new key alone: %+v", after)
	}
	rows, err := f.api.Store.AllSecurityPolicies(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("policies %v %v", rows, err)
	}
	if p, err := subscription.NewSealer(onlyNew).OpenPolicy(rows[0]); err != nil || p.OAuth.ClientSecret != "policy-secret" || p.SignedKey == nil {
		t.Errorf("the policy after reseal, with the new key alone: %+v %v", p, err)
	}
}

// TestSecurityPolicyInTheRegistry: a webhook using a policy is delivered
// with the policy's OAuth (and scopes) and signing key, as stored through
// the API in ClickHouse and read by delivery's registry; a PATCH of the
// policy shows at once; detached, the webhook has its own settings again.
func TestSecurityPolicyInTheRegistry(t *testing.T) {
	f := newRegistryFixture(t)
	var p struct {
		Policy struct {
			ID        string `json:"id"`
			Signature struct {
				PublicKey string `json:"public_key"`
			} `json:"signature"`
		} `json:"policy"`
	}
	f.api.Must(t, 201, f.api.KeyA, "POST", "/v3/user/webhooks/security/policies", `{"name":"p","signature":{"enabled":true},`+
		`"oauth":{"client_id":"pc","client_secret":"ps","token_url":"https://auth.acme.example/t","scopes":["a","b"]}}`, &p)
	var a webhookJSON
	f.api.Must(t, 201, f.api.KeyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.acme.example/p","bounce":true,`+
		`"oauth_client_id":"own","oauth_client_secret":"own-secret","oauth_token_url":"https://own.acme.example/t","security_policy":"`+p.Policy.ID+`"}`, &a)
	ep, ok := f.endpoint(t, a.ID)
	if !ok {
		t.Fatal("the webhook is not in the registry")
	}
	pk, _ := sign.PublicKeyBase64(ep.SignedKey)
	if ep.OAuth == nil || ep.OAuth.ClientID != "pc" || ep.OAuth.ClientSecret != "ps" || strings.Join(ep.OAuth.Scopes, " ") != "a b" ||
		ep.SignedKey == nil || pk != p.Policy.Signature.PublicKey || len(ep.Secrets) != 1 {
		t.Errorf("endpoint with the policy: OAuth %+v, public key %q (policy's %q)", ep.OAuth, pk, p.Policy.Signature.PublicKey)
	}
	f.api.Must(t, 200, f.api.KeyA, "PATCH", "/v3/user/webhooks/security/policies/"+p.Policy.ID, `{"signature":{"enabled":false}}`, nil)
	if ep, _ := f.endpoint(t, a.ID); ep.SignedKey != nil || ep.OAuth == nil || ep.OAuth.ClientID != "pc" {
		t.Errorf("after the policy stopped signing: key %v, OAuth %+v", ep.SignedKey != nil, ep.OAuth)
	}
	f.api.Must(t, 200, f.api.KeyA, "PATCH", "/v3/user/webhooks/event/settings/"+a.ID, `{"security_policy":""}`, nil)
	if ep, _ := f.endpoint(t, a.ID); ep.OAuth == nil || ep.OAuth.ClientID != "own" || ep.OAuth.ClientSecret != "own-secret" || len(ep.OAuth.Scopes) != 0 {
		t.Errorf("detached: OAuth %+v, want the webhook's own", ep.OAuth)
	}
}
