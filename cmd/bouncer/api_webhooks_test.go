package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/secrets"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
)

// webhookAPI is `bouncer api` run in-process on a fresh database, with keys
// for the accounts acme and globex.
type webhookAPI struct {
	base       string
	keyA, keyB string
	env        map[string]string
	store      *clickhouse.Store
	logs       *syncBuffer
}

// startWebhookAPI migrates a fresh database and runs `bouncer api` with
// extra environment (BOUNCER_SECRET_KEY, BOUNCER_WEBHOOK_ALLOW_NETS, ...)
// until the test ends.
func startWebhookAPI(t *testing.T, extra map[string]string) *webhookAPI {
	t.Helper()
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_ADDR": "127.0.0.1:0",
		"BOUNCER_API_CHECK": "false", "BOUNCER_API_PUBLISH_CHANGES": "false", "BOUNCER_API_RATE_LIMIT": "10000",
		"BOUNCER_WEBHOOK_CLAIMS": "false"}
	for k, v := range extra {
		env[k] = v
	}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	f := &webhookAPI{env: env, keyA: createKey(t, env, "acme"), keyB: createKey(t, env, "globex"), logs: &syncBuffer{}}
	st, err := clickhouse.Open(context.Background(), clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.store = st
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), f.logs, f.logs)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bouncer api: %v", err)
		}
	})
	listening := regexp.MustCompile(`msg="api listening" addr=(\S+)`)
	waitFor(t, "api listening", 30*time.Second, func() (bool, string) {
		if m := listening.FindStringSubmatch(f.logs.String()); m != nil {
			f.base = "http://" + m[1]
			return true, ""
		}
		select {
		case err := <-done:
			t.Fatalf("bouncer api stopped: %v\n%s", err, f.logs.String())
		default:
		}
		return false, f.logs.String()
	})
	return f
}

func (f *webhookAPI) call(t *testing.T, key, method, path, body string) (int, string, http.Header) {
	t.Helper()
	return apitest.Call(t, f.base, key, method, path, body)
}

// must makes a call that must answer want, and decodes its JSON into v.
func (f *webhookAPI) must(t *testing.T, want int, key, method, path, body string, v any) {
	t.Helper()
	code, got, _ := f.call(t, key, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(got), v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, got)
		}
	}
}

// captureReceiver is a loopback webhook receiver that keeps what it got.
type captureReceiver struct {
	mu   sync.Mutex
	reqs []capturedRequest
}

type capturedRequest struct {
	body []byte
	head http.Header
}

func (c *captureReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, capturedRequest{b, r.Header.Clone()})
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (c *captureReceiver) last(t *testing.T) capturedRequest {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		t.Fatal("the receiver got nothing")
	}
	return c.reqs[len(c.reqs)-1]
}

type webhookJSON struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Enabled     bool   `json:"enabled"`
	Bounce      bool   `json:"bounce"`
	SpamReport  bool   `json:"spam_report"`
	Open        bool   `json:"open"`
	PublicKey   string `json:"public_key"`
	CreatedDate string `json:"created_date"`
}

type secretJSON struct {
	ID                string  `json:"id"`
	Secret            string  `json:"secret"`
	PreviousExpiresAt *string `json:"previous_secret_expires_at"`
}

// TestWebhooksAPIOnClickHouse runs `bouncer api` with a secret key and
// a loopback allow-list and takes subscriptions through every route against
// ClickHouse: create, list, get, update, signing, the secret and its
// rotation, a test delivery whose signatures both vendors' verifiers
// accept, delete; another account never sees or changes them; and plain
// SQL on the table shows neither the secrets nor the private key.
func TestWebhooksAPIOnClickHouse(t *testing.T) {
	rcv := &captureReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	f := startWebhookAPI(t, map[string]string{secrets.EnvKey: secrets.GenerateKey(), "BOUNCER_WEBHOOK_ALLOW_NETS": allowOnly(t, srv.URL)})
	const base = "/v3/user/webhooks/event/settings"

	var created webhookJSON
	f.must(t, 201, f.keyA, "POST", base, `{"url":"`+srv.URL+`/a","bounce":true,"spam_report":true,"friendly_name":"x'); DROP TABLE webhooks; --"}`, &created)
	if created.ID == "" || !created.Enabled || !created.Bounce || !created.SpamReport || created.Open {
		t.Fatalf("created %+v", created)
	}
	id := created.ID
	var second webhookJSON
	f.must(t, 201, f.keyA, "POST", base, `{"url":"`+srv.URL+`/b","open":true}`, &second)

	var list struct {
		MaxAllowed int           `json:"max_allowed"`
		Webhooks   []webhookJSON `json:"webhooks"`
	}
	f.must(t, 200, f.keyA, "GET", base+"/all", "", &list)
	if len(list.Webhooks) != 2 || list.Webhooks[0].ID != id || list.Webhooks[1].ID != second.ID || list.MaxAllowed != 5 {
		t.Fatalf("list %+v, want the two, oldest first", list)
	}
	code, body, _ := f.call(t, f.keyA, "GET", base+"/"+id, "")
	if code != 200 || !strings.Contains(body, `"friendly_name":"x'); DROP TABLE webhooks; --"`) {
		t.Errorf("get: %d %s (the name is stored as given)", code, body)
	}
	var patched webhookJSON
	f.must(t, 200, f.keyA, "PATCH", base+"/"+id, `{"open":true,"spam_report":false}`, &patched)
	if !patched.Open || patched.SpamReport || !patched.Bounce {
		t.Errorf("patched %+v: want open and bounce", patched)
	}
	if code, body, _ := f.call(t, f.keyA, "PATCH", base+"/"+second.ID, `{"url":"`+srv.URL+`/a"}`); code != 400 || !strings.Contains(body, "already exists") {
		t.Errorf("a second subscription with the same URL: %d %s", code, body)
	}

	var pk struct {
		ID        string `json:"id"`
		PublicKey string `json:"public_key"`
	}
	f.must(t, 200, f.keyA, "PATCH", base+"/signed/"+id, `{"enabled":true}`, &pk)
	if pk.ID != id || pk.PublicKey == "" {
		t.Fatalf("signed on: %+v", pk)
	}
	var sec secretJSON
	f.must(t, 200, f.keyA, "GET", "/bouncer/v1/webhooks/"+id+"/secret", "", nil)
	f.must(t, 200, f.keyA, "GET", "/bouncer/v1/webhooks/"+id+"/secret", "", &sec)
	if !strings.HasPrefix(sec.Secret, "whsec_") || sec.PreviousExpiresAt != nil {
		t.Fatalf("secret %+v", sec)
	}

	// A test delivery: both vendors' verifiers accept it.
	if code, body, h := f.call(t, f.keyA, "POST", "/v3/user/webhooks/event/test", `{"id":"`+id+`"}`); code != 204 || h.Get("X-Bouncer-Receiver-Status") != "204" {
		t.Fatalf("test: %d %s", code, body)
	}
	got := rcv.last(t)
	verifyStandard(t, sec.Secret, got)
	verifySendGrid(t, pk.PublicKey, got)
	var events []struct {
		Event string `json:"event"`
	}
	if err := json.Unmarshal(got.body, &events); err != nil || len(events) != 2 || events[0].Event != "bounce" || events[1].Event != "open" {
		t.Errorf("test batch %s: want a bounce and an open", got.body)
	}

	// Rotation: during the grace period both secrets sign.
	var rotated secretJSON
	f.must(t, 200, f.keyA, "POST", "/bouncer/v1/webhooks/"+id+"/secret/rotate", `{"grace_period_seconds":3600}`, &rotated)
	if rotated.Secret == sec.Secret || rotated.PreviousExpiresAt == nil {
		t.Fatalf("rotated %+v", rotated)
	}
	until, err := time.Parse(time.RFC3339, *rotated.PreviousExpiresAt)
	if err != nil || until.Before(time.Now().Add(59*time.Minute)) || until.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("previous secret until %v, want about an hour from now", *rotated.PreviousExpiresAt)
	}
	f.must(t, 204, f.keyA, "POST", "/v3/user/webhooks/event/test", `{"id":"`+id+`"}`, nil)
	got = rcv.last(t)
	verifyStandard(t, rotated.Secret, got)
	verifyStandard(t, sec.Secret, got)

	// Another account: 404 everywhere, its own list empty, nothing changed.
	before, _, _ := f.store.Webhook(context.Background(), "acme", id)
	for _, r := range []struct{ method, path, body string }{
		{"GET", base + "/" + id, ""},
		{"PATCH", base + "/" + id, `{"url":"` + srv.URL + `/stolen","enabled":false}`},
		{"DELETE", base + "/" + id, ""},
		{"GET", base + "/signed/" + id, ""},
		{"PATCH", base + "/signed/" + id, `{"enabled":false}`},
		{"GET", "/bouncer/v1/webhooks/" + id + "/secret", ""},
		{"POST", "/bouncer/v1/webhooks/" + id + "/secret/rotate", ""},
		{"POST", "/v3/user/webhooks/event/test", `{"id":"` + id + `"}`},
	} {
		if code, body, _ := f.call(t, f.keyB, r.method, r.path, r.body); code != 404 {
			t.Errorf("globex %s %s: %d %s, want 404", r.method, r.path, code, body)
		}
	}
	if code, body, _ := f.call(t, f.keyB, "GET", base+"/all", ""); code != 200 || !strings.Contains(body, `"webhooks":[]`) {
		t.Errorf("globex's list: %d %s", code, body)
	}
	after, _, _ := f.store.Webhook(context.Background(), "acme", id)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("acme's subscription changed through globex's requests:\n%+v\n%+v", before, after)
	}
	// The same URL is fine in another account.
	f.must(t, 201, f.keyB, "POST", base, `{"url":"`+srv.URL+`/a"}`, nil)

	// Plain SQL: no secret, no private key, in any form, in any row.
	keys, err := secrets.ParseKeyring(f.env[secrets.EnvKey])
	if err != nil {
		t.Fatal(err)
	}
	eps, err := subscription.NewRegistry(f.store, keys).Endpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var forbidden [][]byte
	for _, ep := range eps {
		for _, s := range ep.Secrets {
			forbidden = append(forbidden, secretForms(s.Key)...)
			forbidden = append(forbidden, []byte(sign.FormatSecret(s.Key)))
		}
		if ep.SignedKey != nil {
			der, err := sign.MarshalPrivateKey(ep.SignedKey)
			if err != nil {
				t.Fatal(err)
			}
			forbidden = append(forbidden, secretForms(der)...)
			forbidden = append(forbidden, secretForms(ep.SignedKey.D.Bytes())...)
		}
	}
	if len(forbidden) < 3*5 {
		t.Fatalf("only %d forms to look for: the registry did not open the secrets", len(forbidden))
	}
	raw := selectAll(t, f.store, "SELECT * FROM webhooks")
	if !bytes.Contains(raw, []byte(pk.PublicKey)) || !bytes.Contains(raw, []byte("DROP TABLE")) {
		t.Fatal("the raw dump lacks the public key or the friendly name: it is not the table's content")
	}
	for _, b := range forbidden {
		if bytes.Contains(raw, b) {
			t.Errorf("SELECT * FROM webhooks reveals a secret (%d bytes)", len(b))
		}
	}

	// Delete: gone for the API and for delivery.
	f.must(t, 204, f.keyA, "DELETE", base+"/"+id, "", nil)
	if code, _, _ := f.call(t, f.keyA, "GET", base+"/"+id, ""); code != 404 {
		t.Errorf("get after delete: %d", code)
	}
	f.must(t, 200, f.keyA, "GET", base+"/all", "", &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != second.ID {
		t.Errorf("list after delete: %+v", list.Webhooks)
	}
}

// secretForms are the encodings a leaked secret could take.
func secretForms(b []byte) [][]byte {
	return [][]byte{b, []byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawURLEncoding.EncodeToString(b)),
		[]byte(base64.RawStdEncoding.EncodeToString(b)), []byte(hex.EncodeToString(b))}
}

// selectAll runs a query and returns every value of every row, strings as
// their raw bytes, the rest printed.
func selectAll(t *testing.T, st *clickhouse.Store, sql string) []byte {
	t.Helper()
	rows, err := st.Conn().Query(context.Background(), sql)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out bytes.Buffer
	types := rows.ColumnTypes()
	n := 0
	for rows.Next() {
		dest := make([]any, len(types))
		for i, ct := range types {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		for _, d := range dest {
			if s, ok := d.(*string); ok {
				out.WriteString(*s)
			} else {
				fmt.Fprint(&out, reflect.ValueOf(d).Elem().Interface())
			}
			out.WriteByte('\t')
		}
		out.WriteByte('\n')
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("%s: no rows", sql)
	}
	return out.Bytes()
}

func verifyStandard(t *testing.T, secret string, got capturedRequest) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, got.head); err != nil {
		t.Errorf("Standard Webhooks verify with %.12s...: %v (webhook-signature %q)", secret, err, got.head.Get("webhook-signature"))
	}
}

func verifySendGrid(t *testing.T, publicKey string, got capturedRequest) {
	t.Helper()
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(publicKey)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := eventwebhook.VerifySignature(pub, got.body, got.head.Get(eventwebhook.VerificationHTTPHeader), got.head.Get(eventwebhook.TimestampHTTPHeader))
	if !ok || err != nil {
		t.Errorf("SendGrid verify: %v %v", ok, err)
	}
}

// TestWebhooksAPIWithoutSecretKey: without BOUNCER_SECRET_KEY the API
// serves everything else and the webhook routes answer 503 saying what to
// set; a bad key or allow-list stops it with a usage error.
func TestWebhooksAPIWithoutSecretKey(t *testing.T) {
	f := startWebhookAPI(t, nil)
	code, body, _ := f.call(t, f.keyA, "POST", "/v3/user/webhooks/event/settings", `{"url":"https://hooks.example.com/"}`)
	if code != 503 || !strings.Contains(body, "BOUNCER_SECRET_KEY") || !strings.Contains(body, "openssl rand -base64 32") {
		t.Errorf("no key: %d %s", code, body)
	}
	if code, body, _ := f.call(t, f.keyA, "GET", "/v3/suppression/bounces", ""); code != 200 {
		t.Errorf("suppressions without a webhook key: %d %s", code, body)
	}
	if !strings.Contains(f.logs.String(), "BOUNCER_SECRET_KEY is not set") {
		t.Errorf("no warning at start:\n%s", f.logs.String())
	}
	for name, env := range map[string]map[string]string{
		"bad key":        {secrets.EnvKey: "not base64!"},
		"bad allow-list": {secrets.EnvKey: secrets.GenerateKey(), "BOUNCER_WEBHOOK_ALLOW_NETS": "10.0.0.0/33:443"},
		// The old form opened every port of loopback (finding 1 of the
		// security review): refused at start-up, saying how to write it.
		"allow-list without ports": {secrets.EnvKey: secrets.GenerateKey(), "BOUNCER_WEBHOOK_ALLOW_NETS": "127.0.0.1/32"},
	} {
		for k, v := range f.env {
			if _, set := env[k]; !set {
				env[k] = v
			}
		}
		var out syncBuffer
		err := run(context.Background(), []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), &out, &out)
		if err == nil || !(strings.Contains(err.Error(), "BOUNCER_SECRET_KEY") || strings.Contains(err.Error(), "BOUNCER_WEBHOOK_ALLOW_NETS")) {
			t.Errorf("%s: %v, want a usage error naming the variable", name, err)
		}
	}
}

// TestWebhookFlagsHideTheKey: --help never prints the secret key.
func TestWebhookFlagsHideTheKey(t *testing.T) {
	key := secrets.GenerateKey()
	var out syncBuffer
	run(context.Background(), []string{"bouncer", "api", "--help"}, envFunc(map[string]string{secrets.EnvKey: key}), strings.NewReader(""), &out, &out)
	if strings.Contains(out.String(), key) || !strings.Contains(out.String(), "-secret-key") || !strings.Contains(out.String(), "-webhook-allow-nets") {
		t.Errorf("api --help shows the key or lacks the flags:\n%s", out.String())
	}
}

// TestWebhooksSendGridGoClient drives the webhook routes with SendGrid's
// official Go library the way its examples do (sendgrid.GetRequest and
// sendgrid.API, the signed-webhook body from helpers/eventwebhook), against
// `bouncer api` on ClickHouse.
func TestWebhooksSendGridGoClient(t *testing.T) {
	f := startWebhookAPI(t, map[string]string{secrets.EnvKey: secrets.GenerateKey()})
	send := func(method rest.Method, path string, body []byte) *rest.Response {
		t.Helper()
		req := sendgrid.GetRequest(f.keyA, path, f.base)
		req.Method, req.Body = method, body
		resp, err := sendgrid.API(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp
	}
	resp := send(rest.Post, "/v3/user/webhooks/event/settings",
		[]byte(`{"enabled":true,"url":"https://hooks.example.com/sg","bounce":true,"delivered":false,"friendly_name":"Delivery Webhook"}`))
	var created webhookJSON
	if err := json.Unmarshal([]byte(resp.Body), &created); resp.StatusCode != 201 || err != nil || created.ID == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, resp.Body)
	}
	settings := eventwebhook.NewSettings()
	settings.SetEnableSignedWebhook(true)
	body, err := eventwebhook.GetRequestBody(settings)
	if err != nil {
		t.Fatal(err)
	}
	resp = send(rest.Patch, "/v3/user/webhooks/event/settings/signed/"+created.ID, body)
	var pk struct {
		ID        string `json:"id"`
		PublicKey string `json:"public_key"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &pk); resp.StatusCode != 200 || err != nil || pk.ID != created.ID {
		t.Fatalf("signed: %d %s", resp.StatusCode, resp.Body)
	}
	if _, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(pk.PublicKey); err != nil {
		t.Errorf("public key %q: %v", pk.PublicKey, err)
	}
	resp = send(rest.Get, "/v3/user/webhooks/event/settings/all", nil)
	var list struct {
		MaxAllowed int           `json:"max_allowed"`
		Webhooks   []webhookJSON `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &list); resp.StatusCode != 200 || err != nil || len(list.Webhooks) != 1 ||
		list.Webhooks[0].PublicKey != pk.PublicKey || !list.Webhooks[0].Bounce {
		t.Errorf("list: %d %s", resp.StatusCode, resp.Body)
	}
	if resp := send(rest.Delete, "/v3/user/webhooks/event/settings/"+created.ID, nil); resp.StatusCode != 204 {
		t.Errorf("delete: %d %s", resp.StatusCode, resp.Body)
	}
}
