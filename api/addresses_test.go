package api

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// storedOddities are addresses the pipeline accepts and stores (the
// decoder's address shape: local@domain, no space or control character), so
// the API must be able to name each one to look it up, delete, check and
// erase it: markup, slashes (doubled ones too), dot segments, a backslash,
// U+FFFD (what a lone surrogate escape decodes to), a Kelvin sign, and a
// length beyond the stricter rules for adding.
var storedOddities = []struct{ raw, norm string }{
	{"x<script>alert(5)</script>@evil.example", "x<script>alert(5)</script>@evil.example"},
	{"a//b@X.example", "a//b@x.example"},
	{"a/../b@x.example", "a/../b@x.example"},
	{"..@x.example", "..@x.example"},
	{`a\b@x.example`, `a\b@x.example`},
	{"\ufffd@x.example", "\ufffd@x.example"},
	{"\u212Aim@Example.com", "\u212Aim@example.com"},
	{"a@x.example/..", "a@x.example/.."},
	{strings.Repeat("a", 400) + "@x.example", strings.Repeat("a", 400) + "@x.example"},
}

// Every route that names a stored address reaches the store with exactly
// its normalised form (before: 400 for all of these but the first two
// slashes, whose route answered 404).
func TestStoredAddressesCanBeNamed(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &fakeStore{}
	p := newFakePrivacy()
	for _, a := range storedOddities {
		checker := fakeChecker{"acme": a.norm}
		h := NewServer(Config{Store: st, Keys: fakeKeys{k}, Privacy: p, Checker: checker, RateLimit: 1e6})
		esc := url.PathEscape(a.raw)
		body, _ := json.Marshal(map[string]any{"emails": []string{a.raw}})
		before := len(st.changes)
		for _, c := range []struct{ method, path, body string }{
			{"DELETE", "/v3/suppression/invalid_emails/" + esc, ""},
			{"DELETE", "/v3/suppression/bounces", string(body)},
			{"DELETE", "/v3/asm/suppressions/global/" + esc, ""},
			{"DELETE", "/v3/asm/groups/7/suppressions/" + esc, ""},
		} {
			if rec := do(t, h, c.method, c.path, token, c.body); rec.Code != 204 {
				t.Errorf("%q: %s %s: %d %s, want 204", a.raw, c.method, c.path, rec.Code, rec.Body)
			}
		}
		if got := st.changes[before:]; len(got) != 4 {
			t.Errorf("%q: %d changes stored, want 4", a.raw, len(got))
		} else {
			for _, c := range got {
				if c.EmailNorm != a.norm || !c.Deleted {
					t.Errorf("%q: stored %+v, want a removal of %q", a.raw, c, a.norm)
				}
			}
		}
		if rec := do(t, h, "GET", "/v3/suppression/invalid_emails/"+esc, token, ""); rec.Code != 200 {
			t.Errorf("%q: GET: %d %s", a.raw, rec.Code, rec.Body)
		}
		rec := do(t, h, "POST", "/bouncer/v1/suppressions/check", token, string(body))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"suppressed":true`) {
			t.Errorf("%q: check: %d %s, want it suppressed", a.raw, rec.Code, rec.Body)
		}
		erase, _ := json.Marshal(map[string]string{"email": a.raw})
		if rec := do(t, h, "POST", "/bouncer/v1/privacy/erasures", token, string(erase)); rec.Code != 201 {
			t.Errorf("%q: erase: %d %s", a.raw, rec.Code, rec.Body)
		} else if last := p.erased[len(p.erased)-1]; last != "acme/"+a.norm {
			t.Errorf("%q: erased %q, want acme/%q", a.raw, last, a.norm)
		}
	}
}

// Only ASCII letters are folded: the Kelvin sign (U+212A) is not k, and
// Unicode capitals stay as they are, so two different addresses never
// become one (before: both were kim@example.com).
func TestOnlyASCIICaseFolds(t *testing.T) {
	token, k := testKey(t, "acme", false)
	st := &fakeStore{}
	h := NewServer(Config{Store: st, Keys: fakeKeys{k}, Checker: fakeChecker{"acme": "kim@example.com"}, RateLimit: 1e6})
	body := `{"emails":["KIM@Example.com","\u212Aim@example.com","ÄNN@Example.com"]}`
	if rec := do(t, h, "DELETE", "/v3/suppression/bounces", token, body); rec.Code != 204 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	var norms []string
	for _, c := range st.changes {
		norms = append(norms, c.EmailNorm)
	}
	if want := []string{"kim@example.com", "\u212Aim@example.com", "Änn@example.com"}; strings.Join(norms, " ") != strings.Join(want, " ") {
		t.Errorf("removals of %q, want %q", norms, want)
	}
	rec := do(t, h, "POST", "/bouncer/v1/suppressions/check", token, `{"emails":["\u212Aim@example.com","Kim@example.com"]}`)
	var got struct {
		Results []checkResult `json:"results"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || len(got.Results) != 2 {
		t.Fatalf("check: %d %s", rec.Code, rec.Body)
	}
	if got.Results[0].Suppressed || !got.Results[1].Suppressed {
		t.Errorf("check: the Kelvin sign's address is %v (want false), kim's %v (want true)", got.Results[0].Suppressed, got.Results[1].Suppressed)
	}
	if f := strconv.Quote(emailFilterMust(t, "\u212A")); f != strconv.Quote("\u212A%") {
		t.Errorf("list filter of the Kelvin sign: %s", f)
	}
}

func emailFilterMust(t *testing.T, s string) string {
	t.Helper()
	f, err := emailFilter(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Over the route table: every route with an {email} parameter answers 2xx
// for every address the pipeline can store (a new such route is covered
// without editing this test).
func TestEmailRoutesNameEveryStoredAddress(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, Privacy: newFakePrivacy(), Groups: newFakeGroups(), Checker: fakeChecker{}, RateLimit: 1e6})
	n := 0
	for _, rt := range (&server{}).routes() {
		if !strings.Contains(rt.path, "{email}") {
			continue
		}
		n++
		for _, a := range storedOddities {
			p := strings.Replace(fill(strings.Replace(rt.path, "{email}", "EMAIL", 1)), "EMAIL", url.PathEscape(a.raw), 1)
			if rec := do(t, h, rt.method, p, token, ""); rec.Code < 200 || rec.Code > 299 {
				t.Errorf("%s %s (%q): %d %s", rt.method, rt.path, a.raw, rec.Code, rec.Body)
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d routes with {email}", n)
	}
}
