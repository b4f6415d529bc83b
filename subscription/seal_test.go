package subscription

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// TestSealOpenRoundTrip: what Seal stores, Open gives back (secrets, the
// rotated-out secret's end, the SendGrid key and its public half); the
// stored form holds no secret; a sealed value copied to another account or
// id does not open.
func TestSealOpenRoundTrip(t *testing.T) {
	keys, err := secrets.ParseKeyring(secrets.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := sign.NewSecret()
	s2, _ := sign.NewSecret()
	key, _ := sign.NewSigningKey()
	end := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w := Webhook{ID: "11111111-1111-4111-8111-111111111111", URL: "https://hooks.example/e", Enabled: true,
		Events: map[string]bool{"bounce": true}, Secrets: []sign.Secret{s1, {Key: s2.Key, NotAfter: end}}, SignedKey: key}
	o := NewSealer(keys)
	row, err := o.Seal("acme", w, 7)
	if err != nil {
		t.Fatal(err)
	}
	if row.Secrets != nil || row.SignedKey != nil || row.AccountID != "acme" || row.Version != 7 || !row.Signed || row.PublicKey == "" {
		t.Fatalf("stored form: %+v", row)
	}
	got, err := o.Open(row)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Secrets) != 2 || string(got.Secrets[0].Key) != string(s1.Key) || string(got.Secrets[1].Key) != string(s2.Key) ||
		!got.Secrets[1].NotAfter.Equal(end) || got.SignedKey == nil || !got.SignedKey.Equal(key) || got.PublicKey != row.PublicKey {
		t.Errorf("opened: %+v", got)
	}
	moved := row
	moved.AccountID = "globex"
	if _, err := o.Open(moved); !errors.Is(err, secrets.ErrOpen) {
		t.Errorf("a sealed secret moved to another account opened: %v", err)
	}
	moved = row
	moved.ID = "22222222-2222-4222-8222-222222222222"
	if _, err := o.Open(moved); !errors.Is(err, secrets.ErrOpen) {
		t.Errorf("a sealed secret moved to another id opened: %v", err)
	}
	if _, err := o.Seal("acme", Webhook{ID: w.ID}, 1); err == nil {
		t.Error("sealed a subscription without a secret")
	}
}

func TestNextVersion(t *testing.T) {
	now := time.Unix(1764201600, 0)
	if v := NextVersion(0, now); v != uint64(now.UnixNano()) {
		t.Errorf("from 0: %d, want the clock", v)
	}
	ahead := uint64(now.UnixNano()) + 5
	if v := NextVersion(ahead, now); v != ahead+1 {
		t.Errorf("behind the row's version: %d, want %d", v, ahead+1)
	}
}

func TestState(t *testing.T) {
	for _, c := range []struct {
		w    Webhook
		want string
	}{
		{Webhook{Enabled: true}, "active"},
		{Webhook{}, "off"},
		{Webhook{Enabled: true, DisabledAt: time.Unix(1, 0)}, "disabled"},
	} {
		if got := c.w.State(); got != c.want {
			t.Errorf("%+v: %s, want %s", c.w, got, c.want)
		}
	}
}

// TestSealOpenOAuth: the OAuth client secret is sealed (never in the
// stored form), opens again with the client id and token URL, and is bound
// to its account, id and purpose like the signing secrets.
func TestSealOpenOAuth(t *testing.T) {
	keys, err := secrets.ParseKeyring(secrets.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	s1, _ := sign.NewSecret()
	w := Webhook{ID: "11111111-1111-4111-8111-111111111111", URL: "https://hooks.example/e", Secrets: []sign.Secret{s1},
		OAuth: &OAuth{ClientID: "bouncer", ClientSecret: "s3cret-value", TokenURL: "https://auth.example/token"}}
	o := NewSealer(keys)
	row, err := o.Seal("acme", w, 1)
	if err != nil {
		t.Fatal(err)
	}
	if row.OAuth != nil || row.OAuthClientID != "bouncer" || row.OAuthTokenURL != "https://auth.example/token" ||
		row.OAuthSecretSealed == "" || strings.Contains(row.OAuthSecretSealed, "s3cret-value") {
		t.Fatalf("stored form: %+v", row)
	}
	got, err := o.Open(row)
	if err != nil {
		t.Fatal(err)
	}
	if got.OAuth == nil || got.OAuth.ClientID != "bouncer" || got.OAuth.ClientSecret != "s3cret-value" || got.OAuth.TokenURL != "https://auth.example/token" {
		t.Errorf("opened: %+v", got.OAuth)
	}
	// The signing secret's sealed value does not open as the OAuth secret.
	swapped := row
	swapped.OAuthSecretSealed = row.SecretSealed
	if _, err := o.Open(swapped); !errors.Is(err, secrets.ErrOpen) {
		t.Errorf("a signing secret opened as the OAuth secret: %v", err)
	}
	moved := row
	moved.AccountID = "globex"
	moved.SecretSealed = ""
	if _, err := o.Open(moved); !errors.Is(err, secrets.ErrOpen) {
		t.Errorf("an OAuth secret moved to another account opened: %v", err)
	}
	if _, err := o.Seal("acme", Webhook{ID: w.ID, Secrets: w.Secrets, OAuth: &OAuth{ClientID: "x", TokenURL: "https://a/t"}}, 1); err == nil {
		t.Error("sealed OAuth without a client secret")
	}
}
