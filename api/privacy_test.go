package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/suppression"
)

// fakePrivacy keeps lists and erasure records per account in memory.
type fakePrivacy struct {
	mu       sync.Mutex
	lists    map[string][]csvlist.Row // account/list/group
	erasures map[string][]suppression.Erasure
	erased   []string // account/email_norm
	failAt   int      // ExportList fails after this many rows when > 0
}

func newFakePrivacy() *fakePrivacy {
	return &fakePrivacy{lists: map[string][]csvlist.Row{}, erasures: map[string][]suppression.Erasure{}}
}

func listKey(account, list string, group int64) string {
	return fmt.Sprintf("%s/%s/%d", account, list, group)
}

func (f *fakePrivacy) Erase(ctx context.Context, account, emailNorm, by string) (suppression.Erasure, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.erased = append(f.erased, account+"/"+emailNorm)
	e := suppression.Erasure{ID: fmt.Sprint("e", len(f.erased)), EmailSHA256: strings.Repeat("ab", 32), RequestedBy: by, At: time.Unix(1764201600, 0),
		Tables: []suppression.ErasedTable{{Table: "events", Rows: 3}, {Table: "suppressions", Rows: 1}}}
	f.erasures[account] = append([]suppression.Erasure{e}, f.erasures[account]...)
	e.Skipped = []string{"webhook_deliveries: no account_id column"}
	return e, nil
}

func (f *fakePrivacy) Erasures(ctx context.Context, account string, offset, limit uint64) ([]suppression.Erasure, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.erasures[account]
	if offset >= uint64(len(es)) {
		return nil, nil
	}
	return es[offset:min(uint64(len(es)), offset+limit)], nil
}

func (f *fakePrivacy) ExportList(ctx context.Context, account, list string, group int64, fn func(csvlist.Row) error) error {
	f.mu.Lock()
	rows := append([]csvlist.Row(nil), f.lists[listKey(account, list, group)]...)
	f.mu.Unlock()
	for i, r := range rows {
		if f.failAt > 0 && i == f.failAt {
			return errors.New("clickhouse went away")
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakePrivacy) ImportList(ctx context.Context, account, list string, group int64, rows []csvlist.Row) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := listKey(account, list, group)
	f.lists[k] = append(f.lists[k], rows...)
	return nil
}

func privacyServer(t *testing.T) (http.Handler, *fakePrivacy, string, string) {
	t.Helper()
	keyA, kA := testKey(t, "acme", false)
	keyB, kB := testKey(t, "globex", false)
	p := newFakePrivacy()
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kA, kB}, Privacy: p, RateLimit: 1000, MaxBodyBytes: 4096})
	return h, p, keyA, keyB
}

func TestEraseRoute(t *testing.T) {
	h, p, keyA, keyB := privacyServer(t)
	rec := do(t, h, "POST", "/bouncer/v1/privacy/erasures", keyA, `{"email":" Kim@Example.COM "}`)
	if rec.Code != 201 {
		t.Fatalf("erase: %d %s", rec.Code, rec.Body)
	}
	var got erasureJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.RowsRemoved != 4 || len(got.Tables) != 2 || !strings.HasPrefix(got.RequestedBy, "key:") || len(got.Skipped) != 1 {
		t.Errorf("answer %+v", got)
	}
	if len(p.erased) != 1 || p.erased[0] != "acme/kim@example.com" {
		t.Errorf("store erased %v, want acme/kim@example.com (normalised, the key's account)", p.erased)
	}
	rec = do(t, h, "GET", "/bouncer/v1/privacy/erasures", keyA, "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"rows_removed":4`) || strings.Contains(rec.Body.String(), "skipped") {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/privacy/erasures?limit=1&offset=5", keyA, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"result":[]}` {
		t.Errorf("past the end: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/privacy/erasures", keyB, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"result":[]}` {
		t.Errorf("another account's records: %d %s", rec.Code, rec.Body)
	}
	for body, field := range map[string]string{
		`{}`:                       "email",
		`{"email":"not-an-email"}`: "email",
		`{"email":7}`:              "email",
		`{"email":"a@x.org"} {}`:   "",
	} {
		rec := do(t, h, "POST", "/bouncer/v1/privacy/erasures", keyA, body)
		f, _ := sendGridError(t, rec)
		if rec.Code != 400 || (field == "") != (f == nil) || f != nil && *f != field {
			t.Errorf("%s: %d %s, want 400 naming %q", body, rec.Code, rec.Body, field)
		}
	}
	if rec := do(t, h, "GET", "/bouncer/v1/privacy/erasures?limit=501", keyA, ""); rec.Code != 400 {
		t.Errorf("limit 501: %d", rec.Code)
	}
	if len(p.erased) != 1 {
		t.Errorf("bad requests erased something: %v", p.erased)
	}
	off := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{}})
	if rec := do(t, off, "POST", "/bouncer/v1/privacy/erasures", "", `{"email":"a@x.org"}`); rec.Code != 401 {
		t.Errorf("without a key: %d", rec.Code)
	}
	_, kA := testKey(t, "acme", false)
	tok, kA2 := testKey(t, "acme", false)
	off = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{kA, kA2}})
	if rec := do(t, off, "POST", "/bouncer/v1/privacy/erasures", tok, `{"email":"a@x.org"}`); rec.Code != 404 {
		t.Errorf("without a privacy store: %d, want 404", rec.Code)
	}
}

func TestImportExportRoutes(t *testing.T) {
	h, p, keyA, keyB := privacyServer(t)
	file := "email,created,status,reason\n" +
		"Kim@Example.com,2025-11-27 00:00:00,5.1.1,550 user unknown\n" +
		"\n" +
		"lee@example.com,1764201600,5.1.1,\"550 5.1.1 no, such user\"\n"
	rec := do(t, h, "POST", "/bouncer/v1/suppressions/bounces/import", keyA, file)
	if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"imported":2}` {
		t.Fatalf("import: %d %s", rec.Code, rec.Body)
	}
	rows := p.lists["acme/bounces/0"]
	if len(rows) != 2 || rows[0].EmailNorm != "kim@example.com" || rows[0].Email != "Kim@Example.com" || rows[1].Reason != "550 5.1.1 no, such user" ||
		!rows[0].Created.Equal(time.Unix(1764201600, 0)) {
		t.Errorf("stored %+v", rows)
	}

	rec = do(t, h, "GET", "/bouncer/v1/suppressions/bounces/export", keyA, "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") || !strings.Contains(rec.Header().Get("Content-Disposition"), "bounces.csv") {
		t.Fatalf("export: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	recs, err := csv.NewReader(strings.NewReader(rec.Body.String())).ReadAll()
	if err != nil || len(recs) != 3 || strings.Join(recs[0], ",") != "email,created,status,reason" ||
		strings.Join(recs[1], "|") != "Kim@Example.com|2025-11-27 00:00:00|5.1.1|550 user unknown" {
		t.Errorf("export CSV %q (%v)", recs, err)
	}
	rec = do(t, h, "GET", "/bouncer/v1/suppressions/bounces/export?time_format=unix", keyA, "")
	if !strings.Contains(rec.Body.String(), "Kim@Example.com,1764201600,") {
		t.Errorf("unix export: %s", rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/suppressions/bounces/export", keyB, ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "email,created,status,reason" {
		t.Errorf("globex's export: %d %q, want only the header", rec.Code, rec.Body)
	}

	// Group unsubscribes, the other lists' columns.
	if rec := do(t, h, "POST", "/bouncer/v1/suppressions/unsubscribes/import?group_id=7", keyA, "email\na@x.org\n"); rec.Code != 200 || len(p.lists["acme/unsubscribes/7"]) != 1 {
		t.Errorf("group import: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/bouncer/v1/suppressions/global_unsubscribes/export?group_id=7", keyA, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), "email,created\na@x.org,") {
		t.Errorf("group export: %d %q", rec.Code, rec.Body)
	}

	// A bad file writes nothing and names every bad line.
	before := len(p.lists["acme/bounces/0"])
	bad := "email,created\nok@x.org,\nnot-an-address,\nb@x.org,yesterday\n\"unterminated,\n"
	rec = do(t, h, "POST", "/bouncer/v1/suppressions/bounces/import", keyA, bad)
	if rec.Code != 400 {
		t.Fatalf("bad file: %d %s", rec.Code, rec.Body)
	}
	var eb struct {
		Errors []struct {
			Field   *string `json:"field"`
			Message string  `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, e := range eb.Errors {
		if e.Field != nil {
			fields = append(fields, *e.Field)
		}
	}
	if strings.Join(fields, ",") != "line 3,line 4,line 5" || !strings.Contains(eb.Errors[len(eb.Errors)-1].Message, "nothing was imported") {
		t.Errorf("bad rows: %s", rec.Body)
	}
	if len(p.lists["acme/bounces/0"]) != before {
		t.Errorf("a bad file imported rows")
	}

	for _, c := range []struct {
		method, path, body string
		status             int
		field              string
	}{
		{"POST", "/bouncer/v1/suppressions/bounces/import", "", 400, ""},
		{"POST", "/bouncer/v1/suppressions/bounces/import", "created,reason\n1,x\n", 400, ""},
		{"POST", "/bouncer/v1/suppressions/bounces/import", "email\n" + strings.Repeat("a@x.org\n", 600), 413, ""},
		{"POST", "/bouncer/v1/suppressions/bounces/import?group_id=3", "email\na@x.org\n", 400, "group_id"},
		{"POST", "/bouncer/v1/suppressions/bounces/import?timezone=Mars/Olympus", "email\na@x.org\n", 400, "timezone"},
		{"POST", "/bouncer/v1/suppressions/hard_bounces/import", "email\na@x.org\n", 404, "list"},
		{"GET", "/bouncer/v1/suppressions/nope/export", "", 404, "list"},
		{"GET", "/bouncer/v1/suppressions/bounces/export?time_format=iso", "", 400, "time_format"},
		{"GET", "/bouncer/v1/suppressions/unsubscribes/export?group_id=0", "", 400, "group_id"},
	} {
		rec := do(t, h, c.method, c.path, keyA, c.body)
		f, _ := sendGridError(t, rec)
		if rec.Code != c.status || (c.field == "") != (f == nil) || f != nil && *f != c.field {
			t.Errorf("%s %s: %d %s, want %d naming %q", c.method, c.path, rec.Code, rec.Body, c.status, c.field)
		}
	}
	if len(p.lists["acme/bounces/0"]) != before {
		t.Errorf("a refused import wrote rows")
	}
}

// An export that fails after rows went out breaks the connection instead
// of ending as a short, valid-looking file; one that fails before any row
// gets SendGrid's error.
func TestExportFailure(t *testing.T) {
	h, p, keyA, _ := privacyServer(t)
	p.lists["acme/blocks/0"] = []csvlist.Row{{Email: "a@x.org"}, {Email: "b@x.org"}}
	p.failAt = 1
	if rec := do(t, h, "GET", "/bouncer/v1/suppressions/blocks/export", keyA, ""); rec.Code != 500 {
		t.Errorf("failure before the first row: %d %s, want 500", rec.Code, rec.Body)
	}
	var rows []csvlist.Row
	for i := range 5000 {
		rows = append(rows, csvlist.Row{Email: fmt.Sprintf("a%d@x.org", i), Created: time.Unix(1764201600, 0)})
	}
	p.lists["acme/blocks/0"] = rows
	p.failAt = 4000 // past the first 64 KiB buffer
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Errorf("mid-stream failure: recovered %v, want http.ErrAbortHandler", r)
		}
	}()
	rec := do(t, h, "GET", "/bouncer/v1/suppressions/blocks/export", keyA, "")
	t.Errorf("mid-stream failure answered normally: %d, %d bytes", rec.Code, rec.Body.Len())
}

// Hostile cells (a remote server's bounce reason, an address that passes
// the checks) leave the export route as text a spreadsheet does not run,
// and the exported file imports back to the same entries.
func TestExportRouteNeutralisesFormulas(t *testing.T) {
	h, p, keyA, _ := privacyServer(t)
	at := time.Unix(1764201600, 0).UTC()
	hostile := []csvlist.Row{
		{Email: "=cmd|'/Ccalc'!A0@evil.example", EmailNorm: "=cmd|'/ccalc'!a0@evil.example", Created: at, Status: "+5.1.1", Reason: `=HYPERLINK("http://evil.example","x")`},
		{Email: "-1@evil.example", EmailNorm: "-1@evil.example", Created: at, Status: "@A1", Reason: "\t=2+2"},
		{Email: "kim@example.com", EmailNorm: "kim@example.com", Created: at, Status: "5.1.1", Reason: "\r-1"},
	}
	p.lists["acme/bounces/0"] = hostile
	rec := do(t, h, "GET", "/bouncer/v1/suppressions/bounces/export", keyA, "")
	if rec.Code != 200 {
		t.Fatalf("export: %d %s", rec.Code, rec.Body)
	}
	exported := rec.Body.String()
	recs, err := csv.NewReader(strings.NewReader(exported)).ReadAll()
	if err != nil || len(recs) != 1+len(hostile) {
		t.Fatalf("export %q: %v", exported, err)
	}
	for _, r := range recs[1:] {
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("exported cell %q starts a formula", cell)
			}
		}
	}
	if rec := do(t, h, "POST", "/bouncer/v1/suppressions/blocks/import", keyA, exported); rec.Code != 200 {
		t.Fatalf("import of the export: %d %s", rec.Code, rec.Body)
	}
	back := p.lists["acme/blocks/0"]
	if len(back) != len(hostile) {
		t.Fatalf("imported %d rows, want %d", len(back), len(hostile))
	}
	for i, want := range hostile {
		got := back[i]
		if got.Email != want.Email || got.EmailNorm != want.EmailNorm || got.Status != want.Status || got.Reason != want.Reason || !got.Created.Equal(want.Created) {
			t.Errorf("row %d came back as %+v, want %+v", i, got, want)
		}
	}
}
