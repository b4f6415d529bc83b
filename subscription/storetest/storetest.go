// Package storetest is the conformance suite of the API's subscription
// store (api.WebhookStore; subscription.Service over ClickHouse in
// production): the same tests run against the Service and against the
// in-memory fake of the API's unit tests, so the fake cannot drift from
// what the API relies on (watermill's pubsub/tests idea).
//
// What the suite holds a store to:
//
//   - An account reads only its own subscriptions and policies, oldest
//     first, as they were last written (secrets and settings round trip);
//     an unknown id reads as ok false.
//   - Creates keep the limits: at most subscription.MaxPerAccount
//     subscriptions (subscription.ErrLimit), one URL each
//     (*subscription.URLTakenError naming the holder); a URL change to a
//     taken URL is refused the same way, one of a deleted subscription
//     answers ok false; a delete frees its slot and its URL.
//   - Every write makes a version newer than the one it was given.
//   - Policies: at most subscription.MaxPoliciesPerAccount
//     (subscription.ErrPolicyLimit); put and delete as for subscriptions.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// Store is what the suite tests: the subscription and policy methods of
// the API's webhook store.
type Store interface {
	Webhooks(ctx context.Context, account string) ([]subscription.Webhook, error)
	Webhook(ctx context.Context, account, id string) (subscription.Webhook, bool, error)
	CreateWebhook(ctx context.Context, account string, w subscription.Webhook) error
	ChangeWebhookURL(ctx context.Context, account string, w subscription.Webhook, oldURL string) (bool, error)
	PutWebhook(ctx context.Context, account string, w subscription.Webhook) error
	DeleteWebhook(ctx context.Context, account string, w subscription.Webhook, at time.Time) error
	SecurityPolicies(ctx context.Context, account string) ([]subscription.Policy, error)
	SecurityPolicy(ctx context.Context, account, id string) (subscription.Policy, bool, error)
	CreateSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error
	PutSecurityPolicy(ctx context.Context, account string, p subscription.Policy) error
	DeleteSecurityPolicy(ctx context.Context, account string, p subscription.Policy, at time.Time) error
}

// Run runs the suite; newStore returns a store for each test. Accounts are
// unique to the test, so one database may back them all.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s Store, account string)
	}{
		{"RoundTripAndIsolation", roundTripAndIsolation},
		{"Limits", limits},
		{"ChangeURL", changeURL},
		{"DeleteFrees", deleteFrees},
		{"Policies", policies},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newStore(t), fmt.Sprintf("st%s%d", tc.name, time.Now().UnixNano()%1e9))
		})
	}
}

var t0 = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func hook(id, url string, n int) subscription.Webhook {
	return subscription.Webhook{ID: id, URL: url, Enabled: true, Events: map[string]bool{"bounce": true, "delivered": n%2 == 0},
		Secrets: []sign.Secret{{Key: []byte(fmt.Sprintf("%032d", n))}}, FriendlyName: "hook " + id,
		Created: t0.Add(time.Duration(n) * time.Minute), UpdatedAt: t0.Add(time.Duration(n) * time.Minute)}
}

func ids(ws []subscription.Webhook) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

func list(t *testing.T, s Store, account string) []subscription.Webhook {
	t.Helper()
	ws, err := s.Webhooks(context.Background(), account)
	if err != nil {
		t.Fatalf("Webhooks: %v", err)
	}
	return ws
}

func get(t *testing.T, s Store, account, id string) subscription.Webhook {
	t.Helper()
	w, ok, err := s.Webhook(context.Background(), account, id)
	if err != nil || !ok {
		t.Fatalf("Webhook(%s): ok %v, %v", id, ok, err)
	}
	return w
}

func create(t *testing.T, s Store, account string, w subscription.Webhook) {
	t.Helper()
	if err := s.CreateWebhook(context.Background(), account, w); err != nil {
		t.Fatalf("CreateWebhook(%s): %v", w.ID, err)
	}
}

func roundTripAndIsolation(t *testing.T, s Store, account string) {
	ctx := context.Background()
	a, b := hook("wa", "https://a.example.com/hook", 1), hook("wb", "https://b.example.com/hook", 2)
	create(t, s, account, a)
	create(t, s, account, b)
	if got := ids(list(t, s, account)); !slices.Equal(got, []string{"wa", "wb"}) {
		t.Errorf("Webhooks: %v, want oldest first [wa wb]", got)
	}
	got := get(t, s, account, "wb")
	if got.URL != b.URL || !got.Enabled || !got.Events["bounce"] || !got.Events["delivered"] || got.FriendlyName != b.FriendlyName ||
		len(got.Secrets) != 1 || string(got.Secrets[0].Key) != string(b.Secrets[0].Key) {
		t.Errorf("read back %+v\nwant the fields of %+v", got, b)
	}
	if got.Version == 0 {
		t.Error("a created subscription has version 0")
	}
	if ws := list(t, s, account+"x"); len(ws) != 0 {
		t.Errorf("another account reads %v", ids(ws))
	}
	if _, ok, err := s.Webhook(ctx, account+"x", "wa"); ok || err != nil {
		t.Errorf("another account's Webhook(wa): ok %v, %v", ok, err)
	}
	if _, ok, err := s.Webhook(ctx, account, "nope"); ok || err != nil {
		t.Errorf("unknown id: ok %v, %v", ok, err)
	}
	got.Enabled, got.FriendlyName = false, "renamed"
	before := got.Version
	if err := s.PutWebhook(ctx, account, got); err != nil {
		t.Fatalf("PutWebhook: %v", err)
	}
	if put := get(t, s, account, "wb"); put.Enabled || put.FriendlyName != "renamed" || put.Version <= before {
		t.Errorf("after PutWebhook: enabled %v, name %q, version %d (was %d)", put.Enabled, put.FriendlyName, put.Version, before)
	}
}

func limits(t *testing.T, s Store, account string) {
	for i := range subscription.MaxPerAccount {
		create(t, s, account, hook(fmt.Sprintf("w%d", i), fmt.Sprintf("https://h%d.example.com/", i), i))
	}
	err := s.CreateWebhook(context.Background(), account, hook("over", "https://over.example.com/", 9))
	if !errors.Is(err, subscription.ErrLimit) {
		t.Errorf("create beyond %d: %v, want ErrLimit", subscription.MaxPerAccount, err)
	}
	// The limit is per account.
	create(t, s, account+"x", hook("w0", "https://h0.example.com/", 0))

	account += "u"
	create(t, s, account, hook("first", "https://same.example.com/", 1))
	err = s.CreateWebhook(context.Background(), account, hook("second", "https://same.example.com/", 2))
	var taken *subscription.URLTakenError
	if !errors.As(err, &taken) || taken.ID != "first" || taken.URL != "https://same.example.com/" {
		t.Errorf("create with a taken URL: %v, want URLTakenError by first", err)
	}
	if ws := list(t, s, account); len(ws) != 1 {
		t.Errorf("refused creates stored something: %v", ids(ws))
	}
}

func changeURL(t *testing.T, s Store, account string) {
	ctx := context.Background()
	create(t, s, account, hook("a", "https://a.example.com/", 1))
	create(t, s, account, hook("b", "https://b.example.com/", 2))
	a := get(t, s, account, "a")
	old := a.URL
	a.URL = "https://b.example.com/"
	ok, err := s.ChangeWebhookURL(ctx, account, a, old)
	var taken *subscription.URLTakenError
	if !errors.As(err, &taken) || taken.ID != "b" || ok {
		t.Errorf("change to b's URL: ok %v, %v; want URLTakenError by b", ok, err)
	}
	a.URL = "https://c.example.com/"
	if ok, err := s.ChangeWebhookURL(ctx, account, a, old); !ok || err != nil {
		t.Fatalf("change to a free URL: ok %v, %v", ok, err)
	}
	if got := get(t, s, account, "a"); got.URL != "https://c.example.com/" || got.Version <= a.Version {
		t.Errorf("after the change: URL %s, version %d (was %d)", got.URL, got.Version, a.Version)
	}
	gone := get(t, s, account, "b")
	if err := s.DeleteWebhook(ctx, account, gone, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	gone.URL = "https://d.example.com/"
	if ok, err := s.ChangeWebhookURL(ctx, account, gone, "https://b.example.com/"); ok || err != nil {
		t.Errorf("change of a deleted subscription: ok %v, %v; want ok false", ok, err)
	}
}

func deleteFrees(t *testing.T, s Store, account string) {
	ctx := context.Background()
	for i := range subscription.MaxPerAccount {
		create(t, s, account, hook(fmt.Sprintf("w%d", i), fmt.Sprintf("https://h%d.example.com/", i), i))
	}
	w := get(t, s, account, "w2")
	if err := s.DeleteWebhook(ctx, account, w, t0.Add(time.Hour)); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	if _, ok, err := s.Webhook(ctx, account, "w2"); ok || err != nil {
		t.Errorf("deleted subscription still reads: ok %v, %v", ok, err)
	}
	if got := ids(list(t, s, account)); slices.Contains(got, "w2") || len(got) != subscription.MaxPerAccount-1 {
		t.Errorf("after the delete: %v", got)
	}
	// Its slot and its URL are free again.
	create(t, s, account, hook("again", w.URL, 7))
}

func policies(t *testing.T, s Store, account string) {
	ctx := context.Background()
	pol := func(i int) subscription.Policy {
		return subscription.Policy{ID: fmt.Sprintf("p%02d", i), Name: fmt.Sprintf("policy %d", i), Created: t0.Add(time.Duration(i) * time.Minute),
			UpdatedAt: t0.Add(time.Duration(i) * time.Minute)}
	}
	for i := range subscription.MaxPoliciesPerAccount {
		if err := s.CreateSecurityPolicy(ctx, account, pol(i)); err != nil {
			t.Fatalf("CreateSecurityPolicy(%d): %v", i, err)
		}
	}
	if err := s.CreateSecurityPolicy(ctx, account, pol(99)); !errors.Is(err, subscription.ErrPolicyLimit) {
		t.Errorf("policy beyond %d: %v, want ErrPolicyLimit", subscription.MaxPoliciesPerAccount, err)
	}
	ps, err := s.SecurityPolicies(ctx, account)
	if err != nil || len(ps) != subscription.MaxPoliciesPerAccount || ps[0].ID != "p00" || ps[len(ps)-1].ID != fmt.Sprintf("p%02d", subscription.MaxPoliciesPerAccount-1) {
		t.Fatalf("SecurityPolicies: %d, %v; want %d, oldest first", len(ps), err, subscription.MaxPoliciesPerAccount)
	}
	if others, err := s.SecurityPolicies(ctx, account+"x"); err != nil || len(others) != 0 {
		t.Errorf("another account reads %d policies, %v", len(others), err)
	}
	p, ok, err := s.SecurityPolicy(ctx, account, "p03")
	if !ok || err != nil || p.Name != "policy 3" {
		t.Fatalf("SecurityPolicy(p03): %+v, %v, %v", p, ok, err)
	}
	before := p.Version
	p.Name = "renamed"
	if err := s.PutSecurityPolicy(ctx, account, p); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.SecurityPolicy(ctx, account, "p03"); got.Name != "renamed" || got.Version <= before {
		t.Errorf("after PutSecurityPolicy: %q, version %d (was %d)", got.Name, got.Version, before)
	}
	if err := s.DeleteSecurityPolicy(ctx, account, p, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.SecurityPolicy(ctx, account, "p03"); ok || err != nil {
		t.Errorf("deleted policy still reads: ok %v, %v", ok, err)
	}
	if err := s.CreateSecurityPolicy(ctx, account, pol(99)); err != nil {
		t.Errorf("a delete did not free a policy slot: %v", err)
	}
}
