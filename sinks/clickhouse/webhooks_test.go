package clickhouse

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/subscription"
)

// TestWebhooksNewestVersionWins: the current state of a subscription is its
// newest version whatever order the versions were written in, a tombstone
// hides it, times and event selections round-trip, and the account-scoped
// reads see only their account.
func TestWebhooksNewestVersionWins(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	a1 := subscription.Sealed{Webhook: subscription.Webhook{AccountID: "acme", ID: "11111111-1111-4111-8111-111111111111", Version: 10, URL: "https://a.example/1",
		Enabled: true, FriendlyName: "first", Events: map[string]bool{"bounce": true, "spamreport": true, "group_resubscribe": true},
		Created: t0, UpdatedAt: t0}, SecretSealed: "v1:k1:sealed-a"}
	a1v2 := a1
	a1v2.Version, a1v2.URL, a1v2.Events = 20, "https://a.example/1b", map[string]bool{"open": true}
	a1v2.PrevSecretSealed, a1v2.PrevSecretNotAfter = "v1:k1:sealed-old", t0.Add(24*time.Hour)
	a1v2.Signed, a1v2.SigningKeySealed, a1v2.PublicKey = true, "v1:k1:key", "MFkw"
	a1v2.DisabledAt, a1v2.DisabledReason, a1v2.UpdatedAt = t0.Add(time.Hour), "410 Gone", t0.Add(time.Minute)
	a1v2.OAuthClientID, a1v2.OAuthTokenURL, a1v2.OAuthSecretSealed = "client-1", "https://auth.example/token", "v1:k1:oauth"
	a1v2.SecurityPolicy, a1v2.BouncerFields = "44444444-4444-4444-8444-444444444444", true
	a2 := subscription.Sealed{Webhook: subscription.Webhook{AccountID: "acme", ID: "22222222-2222-4222-8222-222222222222", Version: 5, URL: "https://a.example/2",
		Events: map[string]bool{}, Created: t0.Add(time.Second), UpdatedAt: t0.Add(time.Second)}}
	b1 := subscription.Sealed{Webhook: subscription.Webhook{AccountID: "globex", ID: "33333333-3333-4333-8333-333333333333", Version: 1, URL: "https://b.example/",
		Events: map[string]bool{"delivered": true}, Created: t0, UpdatedAt: t0}}
	// The newer version first: order of writes must not matter.
	for _, w := range []subscription.Sealed{a1v2, a1, a2, b1} {
		if err := s.WriteWebhooks(ctx, []subscription.Sealed{w}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Webhooks(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], a1v2) || !reflect.DeepEqual(got[1], a2) {
		t.Fatalf("acme's webhooks:\n%+v\nwant\n%+v\n%+v", got, a1v2, a2)
	}
	if _, ok, err := s.Webhook(ctx, "globex", a1.ID); err != nil || ok {
		t.Errorf("globex reading acme's id: ok %v err %v, want not found", ok, err)
	}
	if w, ok, err := s.WebhookByID(ctx, b1.ID); err != nil || !ok || !reflect.DeepEqual(w, b1) {
		t.Errorf("by id: %+v %v %v", w, ok, err)
	}
	if _, err := s.Webhooks(ctx, ""); err != subscription.ErrNoAccount {
		t.Errorf("no account: %v, want subscription.ErrNoAccount", err)
	}

	tomb := subscription.Sealed{Webhook: subscription.Webhook{AccountID: "acme", ID: a2.ID, Version: 6, UpdatedAt: t0.Add(time.Hour)}, Deleted: true}
	if err := s.WriteWebhooks(ctx, []subscription.Sealed{tomb}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Webhook(ctx, "acme", a2.ID); err != nil || ok {
		t.Errorf("after the tombstone: ok %v err %v, want gone", ok, err)
	}
	all, err := s.AllWebhooks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, w := range all {
		ids = append(ids, w.AccountID+"/"+w.ID)
	}
	if want := []string{"acme/" + a1.ID, "globex/" + b1.ID}; !reflect.DeepEqual(ids, want) {
		t.Errorf("all webhooks %v, want %v", ids, want)
	}
}

// TestSecurityPoliciesNewestVersionWins: policies round-trip (scopes,
// sealed values, times), the newest version wins whatever the write order,
// a tombstone hides one, and account reads see only their account.
func TestSecurityPoliciesNewestVersionWins(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	p1 := subscription.SealedPolicy{Policy: subscription.Policy{AccountID: "acme", ID: "44444444-4444-4444-8444-444444444444", Name: "oauth",
		Version: 10, Created: t0, UpdatedAt: t0}, OAuthClientID: "c", OAuthTokenURL: "https://auth.example/t",
		OAuthScopes: []string{"a", "b"}, OAuthSecretSealed: "v1:k1:s"}
	p1v2 := p1
	p1v2.Version, p1v2.Name, p1v2.Signed, p1v2.SigningKeySealed, p1v2.PublicKey = 20, "oauth+sig", true, "v1:k1:key", "MFkw"
	p1v2.Policy.PublicKey = "MFkw"
	p2 := subscription.SealedPolicy{Policy: subscription.Policy{AccountID: "globex", ID: "55555555-5555-4555-8555-555555555555", Name: "other",
		Version: 1, Created: t0, UpdatedAt: t0}, OAuthScopes: []string{}, Signed: true, SigningKeySealed: "v1:k1:k2"}
	p2.Policy.PublicKey = "MFkx"
	for _, p := range []subscription.SealedPolicy{p1v2, p1, p2} {
		if err := s.WriteSecurityPolicies(ctx, []subscription.SealedPolicy{p}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.SecurityPolicies(ctx, "acme")
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], p1v2) {
		t.Fatalf("acme's policies %+v %v, want %+v", got, err, p1v2)
	}
	all, err := s.AllSecurityPolicies(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("all policies %+v %v", all, err)
	}
	tomb := subscription.SealedPolicy{Policy: subscription.Policy{AccountID: "acme", ID: p1.ID, Version: 21, UpdatedAt: t0}, Deleted: true}
	if err := s.WriteSecurityPolicies(ctx, []subscription.SealedPolicy{tomb}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SecurityPolicies(ctx, "acme"); err != nil || len(got) != 0 {
		t.Errorf("after the tombstone: %+v %v", got, err)
	}
	if _, err := s.SecurityPolicies(ctx, ""); err != subscription.ErrNoAccount {
		t.Errorf("no account: %v", err)
	}
}
