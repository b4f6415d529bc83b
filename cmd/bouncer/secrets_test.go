package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// TestSecretsResealCommand: `bouncer secrets generate` prints a key, and
// `bouncer secrets reseal` says how many subscriptions it resealed under
// which key, names the key it needs when the old one is missing, and
// refuses to run without BOUNCER_SECRET_KEY. (What resealing does to the
// subscriptions is tested in subscription.)
func TestSecretsResealCommand(t *testing.T) {
	addr := testenv.ClickHouse(t)
	cfg := clickhouse.Config{Addr: []string{addr}, Database: testenv.Database(t, addr)}
	st := apitest.Store(t, cfg)
	oldKey := secrets.GenerateKey()
	old, err := secrets.ParseKeyring(oldKey) // id k1
	if err != nil {
		t.Fatal(err)
	}
	secret, err := sign.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	row, err := subscription.NewSealer(old).Seal("acme", subscription.Webhook{ID: "00000000-0000-4000-8000-000000000001",
		URL: "https://hooks.acme.example/e", Enabled: true, Events: map[string]bool{"bounce": true}, Secrets: []sign.Secret{secret},
		UpdatedAt: time.Now(), Created: time.Now()}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WriteWebhooks(context.Background(), []subscription.Sealed{row}); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "secrets", "generate"}, envFunc(nil), strings.NewReader(""), &out, &out); err != nil {
		t.Fatal(err)
	}
	newKey := strings.TrimSpace(out.String())
	if _, err := secrets.ParseKeyring(newKey); err != nil {
		t.Fatalf("secrets generate printed %q: %v", newKey, err)
	}
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": cfg.Database, secrets.EnvKey: "k2:" + newKey + "," + "k1:" + oldKey}
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
	if err := run(context.Background(), []string{"bouncer", "secrets", "reseal"}, envFunc(map[string]string{"CLICKHOUSE_ADDR": addr}),
		strings.NewReader(""), &out, &out); err == nil || !strings.Contains(err.Error(), "BOUNCER_SECRET_KEY") {
		t.Errorf("reseal without a key: %v", err)
	}
}
