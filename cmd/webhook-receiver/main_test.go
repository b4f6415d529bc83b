package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
)

// post sends body signed the way bouncer's workers sign it (package sign),
// with the given secret key, and returns the status.
func post(t *testing.T, url string, key []byte, id string, at time.Time, body, sent []byte) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/events", bytes.NewReader(sent))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(sign.HeaderWebhookID, id)
	req.Header.Set(sign.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	req.Header.Set(sign.HeaderWebhookSignature, sign.StandardSignature(id, at, body, []sign.Secret{{Key: key}}, at))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestReceiver(t *testing.T) {
	key := bytes.Repeat([]byte{7}, sign.NewSecretBytes)
	rc, err := newReceiver(sign.FormatSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	now := time.Now()
	batch := []byte(`[{"event":"bounce","sg_event_id":"e1"},{"event":"delivered","sg_event_id":"e2"}]`)
	again := []byte(`[{"event":"delivered","sg_event_id":"e2"}]`)
	other := bytes.Repeat([]byte{8}, sign.NewSecretBytes)

	for _, c := range []struct {
		name       string
		key        []byte
		at         time.Time
		body, sent []byte
		want       int
	}{
		{"signed", key, now, batch, batch, http.StatusNoContent},
		{"a retry of an event it has", key, now, again, again, http.StatusNoContent},
		{"body changed after signing", key, now, batch, bytes.Replace(batch, []byte("bounce"), []byte("click"), 1), http.StatusUnauthorized},
		{"another secret", other, now, batch, batch, http.StatusUnauthorized},
		{"signed ten minutes ago", key, now.Add(-10 * time.Minute), batch, batch, http.StatusUnauthorized},
		{"not an event array", key, now, []byte(`{"event":"bounce"}`), []byte(`{"event":"bounce"}`), http.StatusBadRequest},
	} {
		if got := post(t, srv.URL, c.key, "msg_"+strings.ReplaceAll(c.name, " ", "_"), c.at, c.body, c.sent); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}

	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got counts
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Deliveries != 2 || got.Events != 3 || got.Duplicates != 1 || got.Rejected != 4 ||
		got.ByType["bounce"] != 1 || got.ByType["delivered"] != 2 || got.Last == nil {
		t.Errorf("counts %+v, want 2 deliveries, 3 events (1 bounce, 2 delivered), 1 duplicate, 4 rejected", got)
	}
	if !strings.HasPrefix(got.LastReject, "body:") {
		t.Errorf("last rejection %q, want the body's", got.LastReject)
	}
}

func TestSecretRequired(t *testing.T) {
	var out, errb bytes.Buffer
	for _, secret := range []string{"", "not-a-secret", "whsec_%%%"} {
		err := run(t.Context(), []string{"webhook-receiver", "--listen", "127.0.0.1:0"}, func(k string) string {
			if k == "WEBHOOK_SECRET" {
				return secret
			}
			return ""
		}, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") {
			t.Errorf("secret %q: error %v, want one naming WEBHOOK_SECRET", secret, err)
		}
	}
}
