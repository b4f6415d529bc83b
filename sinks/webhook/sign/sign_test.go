package sign

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Standard Webhooks test vector, from the reference Go library's
// TestWebhookSign: github.com/standard-webhooks/standard-webhooks,
// libraries/go/webhook_test.go (module
// github.com/standard-webhooks/standard-webhooks/libraries v0.0.1). The same
// secret, id, timestamp and payload appear in the other language libraries'
// tests in that repository.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// SendGrid Signed Event Webhook test vector, from sendgrid-go's
// helpers/eventwebhook/eventwebhook_test.go (constants publicKey, signature,
// timestamp and generateTestPayload), github.com/sendgrid/sendgrid-go
// v3.16.1. The payload is the JSON array encoder output there (keys sorted,
// HTML not escaped) with its trailing newline replaced by "\r\n".
const (
	sendgridPublicKey = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
	sendgridSignature = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
	sendgridTimestamp = "1600112502"
	sendgridPayload   = `[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]` + "\r\n"
)

var testBody = []byte(`[{"email":"a@example.com","event":"delivered","sg_event_id":"ev-1","timestamp":1700000000}]`)

func mustSecret(t testing.TB) Secret {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStandardSignatureVector(t *testing.T) {
	key, err := ParseSecret(vectorSecret)
	if err != nil {
		t.Fatalf("ParseSecret(vector): %v", err)
	}
	got := StandardSignature(vectorMsgID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload),
		[]Secret{{Key: key}}, time.Unix(vectorTimestamp, 0))
	if got != vectorSignature {
		t.Fatalf("StandardSignature = %q, want the published vector %q", got, vectorSignature)
	}
	if FormatSecret(key) != vectorSecret {
		t.Fatalf("FormatSecret = %q, want %q", FormatSecret(key), vectorSecret)
	}
}

func TestSendGridVectorVerifiesWithOurKeyParsing(t *testing.T) {
	// Our own verification path parses the key exactly as PublicKeyBase64
	// publishes keys (base64 of DER SubjectPublicKeyInfo).
	if err := VerifySendGrid(sendgridPublicKey, sendgridTimestamp, []byte(sendgridPayload), sendgridSignature); err != nil {
		t.Fatalf("SendGrid's published vector does not verify: %v", err)
	}
	if err := VerifySendGrid(sendgridPublicKey, sendgridTimestamp, []byte(sendgridPayload+" "), sendgridSignature); err == nil {
		t.Fatal("altered payload verified")
	}
	if err := VerifySendGrid(sendgridPublicKey, "1600112503", []byte(sendgridPayload), sendgridSignature); err == nil {
		t.Fatal("altered timestamp verified")
	}
	// And the vendor reads the key the same way: a key we publish
	// round-trips to the same point through their parser, and the vector's
	// key re-encodes to the published string.
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(sendgridPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if base64.StdEncoding.EncodeToString(der) != sendgridPublicKey {
		t.Fatal("SendGrid's public key is not in the form PublicKeyBase64 writes")
	}
}

func TestStandardWebhooksLibraryVerifiesOurHeaders(t *testing.T) {
	sec := mustSecret(t)
	ep := &endpoint{Secrets: []Secret{sec}}
	now := time.Now() // the library checks the timestamp against its own clock
	h := http.Header{}
	if err := SetHeaders(h, ep.Secrets, ep.SignedKey, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, testBody, now); err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(FormatSecret(sec.Key))
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(testBody, h); err != nil {
		t.Fatalf("Standard Webhooks library rejects our headers: %v (headers %v)", err, h)
	}
	if err := wh.Verify(append([]byte(nil), append(testBody, ' ')...), h); err == nil {
		t.Fatal("library verified an altered body")
	}
	// The library's own Sign gives the same value for the same input.
	want, _ := wh.Sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, testBody)
	if got := h.Get(HeaderWebhookSignature); got != want {
		t.Fatalf("webhook-signature = %q, library signs %q", got, want)
	}
	if got := h.Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q", got)
	}
}

func TestRotationWithStandardWebhooksLibrary(t *testing.T) {
	oldSec, newSec := mustSecret(t), mustSecret(t)
	base := time.Now().Truncate(time.Second)
	grace := 24 * time.Hour
	secrets := Rotate([]Secret{oldSec}, newSec, base, grace)
	if len(secrets) != 2 || string(secrets[0].Key) != string(newSec.Key) || !secrets[0].NotAfter.IsZero() ||
		!secrets[1].NotAfter.Equal(base.Add(grace)) {
		t.Fatalf("Rotate = %+v, want new secret first without end, old until base+grace", secrets)
	}
	oldWH, _ := standardwebhooks.NewWebhookRaw(oldSec.Key)
	newWH, _ := standardwebhooks.NewWebhookRaw(newSec.Key)
	ep := &endpoint{Secrets: secrets}

	// The library checks webhook-timestamp against its own clock, so the
	// attempt time is always the real now; the clock that decides which
	// secrets sign is the one we move through the grace period.
	headersAt := func(now time.Time) http.Header {
		h := http.Header{}
		if err := SetHeaders(h, ep.Secrets, ep.SignedKey, "msg_rot", time.Now(), testBody, now); err != nil {
			t.Fatal(err)
		}
		return h
	}
	during := headersAt(base.Add(grace - time.Second))
	if n := len(strings.Fields(during.Get(HeaderWebhookSignature))); n != 2 {
		t.Fatalf("during grace: %d signatures, want 2: %q", n, during.Get(HeaderWebhookSignature))
	}
	if !strings.HasPrefix(during.Get(HeaderWebhookSignature), StandardSignature("msg_rot", mustUnix(t, during), testBody, secrets[:1], base)) {
		t.Fatal("newest secret's signature is not first")
	}
	if err := newWH.Verify(testBody, during); err != nil {
		t.Fatalf("during grace, new secret: %v", err)
	}
	if err := oldWH.Verify(testBody, during); err != nil {
		t.Fatalf("during grace, old secret: %v", err)
	}

	after := headersAt(base.Add(grace)) // NotAfter is exclusive
	if n := len(strings.Fields(after.Get(HeaderWebhookSignature))); n != 1 {
		t.Fatalf("after grace: %d signatures, want 1", n)
	}
	if err := newWH.Verify(testBody, after); err != nil {
		t.Fatalf("after grace, new secret: %v", err)
	}
	if err := oldWH.Verify(testBody, after); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
		t.Fatalf("after grace, old secret: %v, want ErrNoMatchingSignature", err)
	}

	// Rotating again drops the expired secret and caps the previous one.
	again := Rotate(secrets, mustSecret(t), base.Add(grace+time.Hour), time.Hour)
	if len(again) != 2 || string(again[1].Key) != string(newSec.Key) {
		t.Fatalf("second rotation kept %d secrets, want the fresh one and the previous newest", len(again))
	}
	if immediate := Rotate(secrets, mustSecret(t), base, 0); len(immediate) != 1 {
		t.Fatalf("rotation with no grace kept %d secrets, want 1", len(immediate))
	}
}

func mustUnix(t *testing.T, h http.Header) time.Time {
	t.Helper()
	n, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(n, 0)
}

func TestSendGridLibraryVerifiesOurSignatures(t *testing.T) {
	key, err := NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pubB64, err := PublicKeyBase64(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := eventwebhook.ConvertPublicKeyBase64ToECDSA(pubB64)
	if err != nil {
		t.Fatalf("sendgrid-go cannot read our public key: %v", err)
	}
	ep := &endpoint{SignedKey: key}
	ts := time.Unix(1700000123, 0)
	h := http.Header{}
	if err := SetHeaders(h, ep.Secrets, ep.SignedKey, "msg_sg", ts, testBody, ts); err != nil {
		t.Fatal(err)
	}
	if h.Get(eventwebhook.TimestampHTTPHeader) != "1700000123" {
		t.Fatalf("timestamp header = %q", h.Get(eventwebhook.TimestampHTTPHeader))
	}
	if h.Get(HeaderWebhookSignature) != "" {
		t.Fatal("webhook-signature set for an endpoint without secrets")
	}
	ok, err := eventwebhook.VerifySignature(pub, testBody, h.Get(eventwebhook.VerificationHTTPHeader), h.Get(eventwebhook.TimestampHTTPHeader))
	if err != nil || !ok {
		t.Fatalf("sendgrid-go rejects our signature: ok=%v err=%v", ok, err)
	}
	ok, _ = eventwebhook.VerifySignature(pub, append([]byte("x"), testBody...), h.Get(eventwebhook.VerificationHTTPHeader), h.Get(eventwebhook.TimestampHTTPHeader))
	if ok {
		t.Fatal("sendgrid-go verified an altered body")
	}
	ok, _ = eventwebhook.VerifySignature(pub, testBody, h.Get(eventwebhook.VerificationHTTPHeader), "1700000124")
	if ok {
		t.Fatal("sendgrid-go verified an altered timestamp")
	}
	// And the SendGrid vector's payload signed by us verifies with the vendor.
	sig, err := SendGridSignature(key, time.Unix(1600112502, 0), []byte(sendgridPayload))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := eventwebhook.VerifySignature(pub, []byte(sendgridPayload), sig, sendgridTimestamp); !ok || err != nil {
		t.Fatalf("vendor rejects our signature of its own payload: %v %v", ok, err)
	}
}

func TestPrivateKeyRoundTrip(t *testing.T) {
	key, _ := NewSigningKey()
	der, err := MarshalPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(key) {
		t.Fatal("PKCS #8 round trip changed the key")
	}
	sec1, _ := x509.MarshalECPrivateKey(key)
	for name, in := range map[string][]byte{
		"sec1 der":  sec1,
		"pkcs8 pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"sec1 pem":  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
	} {
		got, err := ParsePrivateKey(in)
		if err != nil || !got.Equal(key) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalPKCS8PrivateKey(p384)
	for name, in := range map[string][]byte{
		"empty":   nil,
		"garbage": []byte("not a key"),
		"p384":    p384der,
	} {
		if _, err := ParsePrivateKey(in); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := MarshalPrivateKey(p384); err == nil {
		t.Error("marshalled a P-384 key")
	}
}

func TestParseSecret(t *testing.T) {
	k24 := base64.StdEncoding.EncodeToString(make([]byte, 24))
	k64 := base64.StdEncoding.EncodeToString(make([]byte, 64))
	cases := []struct {
		name, in, wantErr string
		wantLen           int
	}{
		{"vector", vectorSecret, "", 24},
		{"24 bytes", "whsec_" + k24, "", 24},
		{"64 bytes", "whsec_" + k64, "", 64},
		{"surrounding space", " whsec_" + k24 + "\n", "", 24},
		{"empty", "", "is empty", 0},
		{"no prefix", k24, `must start with "whsec_"`, 0},
		{"other prefix", "whsk_" + k24, `must start with "whsec_"`, 0},
		{"not base64", "whsec_***", "must be standard base64", 0},
		{"url base64", "whsec_" + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}), "must be standard base64", 0},
		{"too short", "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16)), "decodes to 16 bytes; Standard Webhooks secrets are 24 to 64 bytes", 0},
		{"too long", "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), "decodes to 65 bytes", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParseSecret(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseSecret(%q) error = %v, want it to say %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || len(key) != tc.wantLen {
				t.Fatalf("ParseSecret(%q) = %d bytes, %v; want %d bytes", tc.in, len(key), err, tc.wantLen)
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, b := mustSecret(t), mustSecret(t)
	if len(a.Key) != NewSecretBytes || !a.NotAfter.IsZero() {
		t.Fatalf("NewSecret = %d bytes, NotAfter %v", len(a.Key), a.NotAfter)
	}
	if string(a.Key) == string(b.Key) {
		t.Fatal("two new secrets are equal")
	}
	back, err := ParseSecret(FormatSecret(a.Key))
	if err != nil || string(back) != string(a.Key) {
		t.Fatalf("Format/Parse round trip: %v", err)
	}
}

func TestStandardSignatureSkipsExpiredAndEmpty(t *testing.T) {
	now := time.Unix(1700000000, 0)
	s1, s2, s3 := mustSecret(t), mustSecret(t), mustSecret(t)
	s2.NotAfter = now.Add(time.Minute)
	s3.NotAfter = now // expired: NotAfter must be after now
	secrets := []Secret{s1, {Key: nil}, s2, s3}
	got := StandardSignature("id", now, testBody, secrets, now)
	want := StandardSignature("id", now, testBody, []Secret{s1}, now) + " " +
		StandardSignature("id", now, testBody, []Secret{s2}, now)
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := StandardSignature("id", now, testBody, []Secret{s3}, now); got != "" {
		t.Fatalf("only expired secrets: %q, want empty", got)
	}
}

func TestSetHeaders(t *testing.T) {
	key, _ := NewSigningKey()
	sec := mustSecret(t)
	ts := time.Unix(1700000000, 0)
	h := http.Header{}
	h.Set(HeaderWebhookSignature, "stale")
	h.Set(HeaderSendGridSignature, "stale")
	if err := SetHeaders(h, nil, nil, "msg_1", ts, testBody, ts); err != nil {
		t.Fatal(err)
	}
	if h.Get(HeaderWebhookID) != "msg_1" || h.Get(HeaderWebhookTimestamp) != "1700000000" {
		t.Fatalf("id/timestamp headers: %v", h)
	}
	if h.Get(HeaderWebhookSignature) != "" || h.Get(HeaderSendGridSignature) != "" || h.Get(HeaderSendGridTimestamp) != "" {
		t.Fatalf("unsigned endpoint kept signature headers: %v", h)
	}
	both := &endpoint{Secrets: []Secret{sec}, SignedKey: key}
	if err := SetHeaders(h, both.Secrets, both.SignedKey, "msg_1", ts, testBody, ts); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{HeaderWebhookSignature, HeaderSendGridSignature, HeaderSendGridTimestamp, "Content-Type"} {
		if h.Get(name) == "" {
			t.Errorf("%s missing", name)
		}
	}
	for _, id := range []string{"", "a.b", "a b", "é", strings.Repeat("x", 257)} {
		if err := SetHeaders(http.Header{}, both.Secrets, both.SignedKey, id, ts, testBody, ts); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
}

func ExampleStandardSignature() {
	key, _ := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	ts := time.Unix(1614265330, 0)
	fmt.Println(StandardSignature("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, []byte(`{"test": 2432232314}`),
		[]Secret{{Key: key}}, ts))
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}

func benchBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

func BenchmarkStandardSignature(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, nsec := range []int{1, 2} {
			b.Run(fmt.Sprintf("body=%dKiB/secrets=%d", size>>10, nsec), func(b *testing.B) {
				body := benchBody(size)
				var secrets []Secret
				for range nsec {
					secrets = append(secrets, mustSecret(b))
				}
				now := time.Now()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					StandardSignature("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body, secrets, now)
				}
			})
		}
	}
}

func BenchmarkSendGridSignature(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("body=%dKiB", size>>10), func(b *testing.B) {
			key, _ := NewSigningKey()
			body := benchBody(size)
			now := time.Now()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SendGridSignature(key, now, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSetHeaders(b *testing.B) {
	key, _ := NewSigningKey()
	ep := &endpoint{Secrets: []Secret{mustSecret(b)}, SignedKey: key}
	body := benchBody(16 << 10)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		h := http.Header{}
		if err := SetHeaders(h, ep.Secrets, ep.SignedKey, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

// endpoint is what a subscription hands SetHeaders.
type endpoint struct {
	Secrets   []Secret
	SignedKey *ecdsa.PrivateKey
}
