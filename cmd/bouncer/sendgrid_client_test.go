package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sendgrid/sendgrid-go"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

// sgBounce is a bounce as SendGrid's v3 reference documents it and as
// users of the Go library decode it (the library returns the raw body).
type sgBounce struct {
	Created int64  `json:"created"`
	Email   string `json:"email"`
	Reason  string `json:"reason"`
	Status  string `json:"status"`
}

// sgErrors is SendGrid's error body.
type sgErrors struct {
	Errors []struct {
		Field   *string `json:"field"`
		Message string  `json:"message"`
	} `json:"errors"`
}

// decodeStrict decodes body into v, refusing fields v does not have, so a
// shape that drifted from SendGrid's fails.
func decodeStrict(t *testing.T, body string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
}

// TestSendGridGoClient points SendGrid's official Go library
// (github.com/sendgrid/sendgrid-go) at a real `bouncer api` on loopback,
// backed by real ClickHouse, and lists, reads and deletes bounces the way
// its README and examples do.
func TestSendGridGoClient(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_ADDR": "127.0.0.1:0",
		"BOUNCER_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	key := createKey(t, env, "acme")
	other := createKey(t, env, "globex")
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC)
	var rows []suppression.Change
	for i, e := range []string{"kim@example.com", "lee@example.com", "pat@example.com", "sam@example.com"} {
		rows = append(rows, suppression.Change{AccountID: "acme", List: "bounces", EmailNorm: e, Email: e, At: t0.Add(time.Duration(i) * time.Hour),
			Reason: "550 5.1.1 The email account that you tried to reach does not exist.", Status: "5.1.1", Classification: "Invalid Address", Source: "event:test"})
	}
	rows = append(rows, suppression.Change{AccountID: "globex", List: "bounces", EmailNorm: "kim@example.com", Email: "kim@example.com", At: t0, Reason: "550", Status: "5.1.1"})
	if err := st.WriteSuppressions(ctx, rows); err != nil {
		t.Fatal(err)
	}
	base := startAPI(t, env, "--check=false", "--publish-changes=false", "--webhook-claims=false", "--rate-limit", "3")

	// As in sendgrid-go's examples/suppression: GetRequest, set Method and
	// QueryParams or Body, then sendgrid.API.
	list := func(query map[string]string) []sgBounce {
		t.Helper()
		request := sendgrid.GetRequest(key, "/v3/suppression/bounces", base)
		request.Method = "GET"
		request.QueryParams = query
		response, err := sendgrid.MakeRequestRetry(request) // waits out a 429
		if err != nil || response.StatusCode != 200 {
			t.Fatalf("list %v: %v %+v", query, err, response)
		}
		var out []sgBounce
		decodeStrict(t, response.Body, &out)
		return out
	}
	emails := func(bs []sgBounce) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Email)
		}
		return out
	}

	got := list(map[string]string{"limit": "2", "offset": "1", "start_time": "1764201600", "end_time": "1764216000"})
	if !slices.Equal(emails(got), []string{"pat@example.com", "lee@example.com"}) || got[0].Created != t0.Add(2*time.Hour).Unix() ||
		got[0].Status != "5.1.1" || !strings.HasPrefix(got[0].Reason, "550 5.1.1") {
		t.Errorf("list with limit, offset and times: %+v", got)
	}

	// One entry: SendGrid answers an array.
	request := sendgrid.GetRequest(key, "/v3/suppression/bounces/kim@example.com", base)
	request.Method = "GET"
	response, err := sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 200 {
		t.Fatalf("get one: %v %+v", err, response)
	}
	var one []sgBounce
	decodeStrict(t, response.Body, &one)
	if len(one) != 1 || one[0].Email != "kim@example.com" || one[0].Created != t0.Unix() {
		t.Errorf("get one: %+v", one)
	}
	if h := http.Header(response.Headers); h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") == "" || h.Get("X-RateLimit-Reset") == "" {
		t.Errorf("rate-limit headers: %v", h)
	}

	// Delete one.
	request = sendgrid.GetRequest(key, "/v3/suppression/bounces/kim@example.com", base)
	request.Method = "DELETE"
	response, err = sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 204 || response.Body != "" {
		t.Fatalf("delete one: %v %+v", err, response)
	}
	if got := emails(list(nil)); !slices.Equal(got, []string{"sam@example.com", "pat@example.com", "lee@example.com"}) {
		t.Errorf("after deleting kim: %v", got)
	}

	// Bulk delete by address, then delete_all.
	request = sendgrid.GetRequest(key, "/v3/suppression/bounces", base)
	request.Method = "DELETE"
	request.Body = []byte(`{"emails":["lee@example.com","pat@example.com"]}`)
	response, err = sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 204 {
		t.Fatalf("bulk delete: %v %+v", err, response)
	}
	if got := emails(list(nil)); !slices.Equal(got, []string{"sam@example.com"}) {
		t.Errorf("after the bulk delete: %v", got)
	}
	request.Body = []byte(`{"delete_all":true}`)
	response, err = sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 204 {
		t.Fatalf("delete_all: %v %+v", err, response)
	}
	if got := list(nil); len(got) != 0 {
		t.Errorf("after delete_all: %+v", got)
	}

	// Errors decode as SendGrid's.
	request = sendgrid.GetRequest(key, "/v3/suppression/bounces", base)
	request.Method = "GET"
	request.QueryParams = map[string]string{"limit": "501"}
	response, err = sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 400 {
		t.Fatalf("limit 501: %v %+v", err, response)
	}
	var e sgErrors
	decodeStrict(t, response.Body, &e)
	if len(e.Errors) != 1 || e.Errors[0].Field == nil || *e.Errors[0].Field != "limit" {
		t.Errorf("limit 501: %s", response.Body)
	}

	// The library's subuser header does not reach another account.
	request = sendgrid.GetRequestSubuser(other, "/v3/suppression/bounces", base, "acme")
	request.Method = "GET"
	response, err = sendgrid.MakeRequestRetry(request)
	if err != nil || response.StatusCode != 200 || !bytes.Contains([]byte(response.Body), []byte(`"kim@example.com"`)) || strings.Count(response.Body, `"email"`) != 1 {
		t.Errorf("globex on behalf of acme: %v %+v, want only globex's own entry", err, response)
	}

	// A wrong key: 401 in SendGrid's words.
	request = sendgrid.GetRequest(key+"x", "/v3/suppression/bounces", base)
	response, err = sendgrid.API(request)
	if err != nil || response.StatusCode != http.StatusUnauthorized || !strings.Contains(response.Body, "authorization grant is invalid") {
		t.Errorf("wrong key: %v %+v", err, response)
	}
}
