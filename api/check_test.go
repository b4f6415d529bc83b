package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bouncer-mail/bouncer/suppression"
)

// fakeChecker knows one suppressed address per account.
type fakeChecker map[string]string

func (f fakeChecker) Lookup(account, email string) []suppression.Membership {
	if f[account] == email {
		return []suppression.Membership{{List: "bounces", ReasonCode: "user_unknown"}}
	}
	return nil
}

func (f fakeChecker) DropReason(account, email string, group, at int64) string {
	if f[account] == email {
		return "Bounced Address"
	}
	return ""
}

func TestBatchCheck(t *testing.T) {
	keyA, kA := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kA}, Checker: fakeChecker{"acme": "gone@x.org", "globex": "kim@x.org"}})
	rec := do(t, h, "POST", "/bouncer/v1/suppressions/check", keyA, `{"emails":["Gone@X.org","kim@x.org"]}`)
	if rec.Code != 200 {
		t.Fatalf("check: %d %s", rec.Code, rec.Body)
	}
	var got struct {
		Results []checkResult `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Results) != 2 {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	if r := got.Results[0]; r.Email != "Gone@X.org" || !r.Suppressed || r.DropReason != "Bounced Address" || len(r.Lists) != 1 {
		t.Errorf("suppressed address: %+v", r)
	}
	// globex's list is not acme's.
	if r := got.Results[1]; r.Suppressed || len(r.Lists) != 0 || !strings.Contains(rec.Body.String(), `"lists":[]`) {
		t.Errorf("another account's entry leaked: %+v", r)
	}
	bad := map[string]string{
		`{}`:                                   "emails",
		`{"emails":["not an address"]}`:        "emails",
		`{"emails":["a@x.org"],"group_id":-1}`: "group_id",
		`{"emails":` + tooMany() + `}`:         "emails",
		`{"emails":"a@x.org"}`:                 "emails",
	}
	for body, field := range bad {
		rec := do(t, h, "POST", "/bouncer/v1/suppressions/check", keyA, body)
		if f, _ := sendGridError(t, rec); rec.Code != 400 || f == nil || *f != field {
			t.Errorf("%.40s: %d %s, want 400 naming %s", body, rec.Code, rec.Body, field)
		}
	}
	if rec := do(t, h, "POST", "/bouncer/v1/suppressions/check", "", `{"emails":["a@x.org"]}`); rec.Code != 401 {
		t.Errorf("without a key: %d", rec.Code)
	}
	off := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kA}})
	if rec := do(t, off, "POST", "/bouncer/v1/suppressions/check", keyA, `{"emails":["a@x.org"]}`); rec.Code != 404 {
		t.Errorf("without a checker: %d, want 404", rec.Code)
	}
}

func tooMany() string {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i <= maxCheck; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"a@x.org"`)
	}
	return b.String() + "]"
}
