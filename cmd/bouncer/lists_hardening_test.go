package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

// indexChanges is a change log that goes straight into an index.
type indexChanges struct{ ix *suppression.Index }

func (c indexChanges) PublishChanges(_ context.Context, rows []suppression.Change) error {
	for _, r := range rows {
		c.ix.Apply(r)
	}
	return nil
}

type nopDeadLetters struct{}

func (nopDeadLetters) PublishDeadLetters(context.Context, []schemas.DeadLetter) error { return nil }

// TestListsHoldOnlyWhatADeleteCanRemove runs the sink group's handler and
// the API on one ClickHouse database, with the batch check's index fed by
// both (as the change log does), and checks issue 16's findings 5 and 7:
// a bounce dated in the far future is a dead letter, not an entry; an
// entry dated ahead of the clock (within the skew bound, or stored before
// there was one) is removed by a single delete, a bulk delete, delete_all
// and an erasure, and the batch check agrees with the list; an odd address
// the pipeline stored can be removed and erased.
func TestListsHoldOnlyWhatADeleteCanRemove(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	f.setClock(now)
	as := newAPIStore(f.store, indexChanges{f.index})
	srv := httptest.NewServer(api.NewServer(api.Config{Store: as, Privacy: as.Service, Checker: f.index, Keys: f.store, Now: f.clock, RateLimit: 10000}))
	t.Cleanup(srv.Close)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+f.keyA)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	listed := func(list string) []string {
		t.Helper()
		code, body := call("GET", "/v3/suppression/"+list, "")
		var es []struct {
			Email string `json:"email"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &es) != nil {
			t.Fatalf("GET %s: %d %s", list, code, body)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Email)
		}
		slices.Sort(out)
		return out
	}
	suppressed := func(email string) bool {
		t.Helper()
		b, _ := json.Marshal(map[string][]string{"emails": {email}})
		code, body := call("POST", "/bouncer/v1/suppressions/check", string(b))
		if code != 200 {
			t.Fatalf("check %s: %d %s", email, code, body)
		}
		return strings.Contains(body, `"suppressed":true`)
	}

	// The pipeline: a bounce dated 2100, and bounces of odd addresses.
	classifier, err := enrich.New()
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipeline.NewHandler(pipeline.Config{Sink: f.store, Publisher: nopDeadLetters{}, Classifier: classifier,
		Suppressions: f.index, Changes: indexChanges{f.index}})
	if err != nil {
		t.Fatal(err)
	}
	const hard = "550 5.1.1 The email account that you tried to reach does not exist"
	odd := []string{"x<script>alert(5)</script>@evil.example", "a//b@x.example"}
	bounce := func(email string, ts int64) []byte {
		return fmt.Appendf(nil, `{"event":"bounce","account_id":"acme","email":%q,"timestamp":%d,"reason":%q}`, email, ts, hard)
	}
	msgs := []consumer.Message{{Topic: "ev", Offset: 0, Time: now, Value: bounce("future@x.org", 4102444800)}}
	for i, e := range odd {
		msgs = append(msgs, consumer.Message{Topic: "ev", Offset: int64(i + 1), Time: now, Value: bounce(e, now.Unix()-60)})
	}
	if err := h.Handle(ctx, "ev", 0, msgs); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, f.store.Conn(), "SELECT count() FROM dead_letters WHERE code = 'future_timestamp' AND kafka_offset = 0"); n != 1 {
		t.Errorf("the bounce dated 2100: %d future_timestamp dead letters, want 1", n)
	}
	if got := listed("bounces"); slices.Contains(got, "future@x.org") {
		t.Errorf("the bounce dated 2100 is listed: %v", got)
	}
	if got := listed("invalid_emails"); !slices.Equal(got, []string{odd[0]}) {
		t.Fatalf("invalid_emails %q, want the markup address", got)
	}
	if got := listed("bounces"); !slices.Equal(got, []string{odd[1]}) { // '/' is atext: a valid address
		t.Fatalf("bounces %q, want a//b@x.example", got)
	}
	if code, body := call("DELETE", "/v3/suppression/bounces/"+url.PathEscape(odd[1]), ""); code != 204 {
		t.Errorf("DELETE a//b@x.example: %d %s", code, body)
	}
	if code, body := call("POST", "/bouncer/v1/privacy/erasures", `{"email":"x<script>alert(5)</script>@evil.example"}`); code != 201 {
		t.Errorf("erase the markup address: %d %s", code, body)
	}
	if got := append(listed("invalid_emails"), listed("bounces")...); len(got) != 0 || suppressed(odd[0]) || suppressed(odd[1]) {
		t.Errorf("after the delete and the erasure: listed %q, suppressed %v %v", got, suppressed(odd[0]), suppressed(odd[1]))
	}

	// Entries dated ahead of the clock: within the skew bound (30 min), and
	// far ahead as stored before the bound existed.
	ahead := map[string]time.Time{
		"soon@x.org": now.Add(30 * time.Minute), "y2100@x.org": time.Unix(4102444800, 0),
		"bulk@x.org": time.Unix(4102444800, 0), "erase@x.org": time.Unix(4102444800, 0),
	}
	for email, at := range ahead {
		f.addEntry(t, "acme", "bounces", email, at)
		f.index.Apply(suppression.Change{AccountID: "acme", List: "bounces", EmailNorm: email, Email: email, At: at})
	}
	f.addEntry(t, "acme", "blocks", "block@x.org", time.Unix(4102444800, 0))
	f.index.Apply(suppression.Change{AccountID: "acme", List: "blocks", EmailNorm: "block@x.org", Email: "block@x.org", At: time.Unix(4102444800, 0)})
	if !suppressed("soon@x.org") || !suppressed("y2100@x.org") {
		t.Errorf("the batch check disagrees with the list: soon %v, y2100 %v, want both suppressed", suppressed("soon@x.org"), suppressed("y2100@x.org"))
	}
	for _, c := range []struct{ method, path, body string }{
		{"DELETE", "/v3/suppression/bounces/soon%40x.org", ""},
		{"DELETE", "/v3/suppression/bounces/y2100%40x.org", ""},
		{"DELETE", "/v3/suppression/bounces", `{"emails":["bulk@x.org"]}`},
		{"DELETE", "/v3/suppression/blocks", `{"delete_all":true}`},
	} {
		if code, body := call(c.method, c.path, c.body); code != 204 {
			t.Fatalf("%s %s %s: %d %s", c.method, c.path, c.body, code, body)
		}
	}
	if code, body := call("POST", "/bouncer/v1/privacy/erasures", `{"email":"erase@x.org"}`); code != 201 {
		t.Fatalf("erase: %d %s", code, body)
	}
	if got := listed("bounces"); len(got) != 0 {
		t.Errorf("bounces after the deletes and the erasure: %q, want none", got)
	}
	if got := listed("blocks"); len(got) != 0 {
		t.Errorf("blocks after delete_all: %q, want none", got)
	}
	for email := range ahead {
		if suppressed(email) {
			t.Errorf("%s is still suppressed in the batch check after its removal", email)
		}
	}
	if suppressed("block@x.org") {
		t.Error("block@x.org is still on the index after delete_all")
	}
}
