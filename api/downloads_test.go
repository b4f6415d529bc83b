package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// fakeDownloads keeps downloads in memory; its export gives events, and
// blocks while hold is set until it is closed.
type fakeDownloads struct {
	mu     sync.Mutex
	ds     map[string]analytics.Download
	parts  map[string][][]byte
	events []analytics.ExportEvent
	hold   chan struct{}
	fail   error
	filter *analytics.ActivityFilter
	from   time.Time
}

func newFakeDownloads() *fakeDownloads {
	return &fakeDownloads{ds: map[string]analytics.Download{}, parts: map[string][][]byte{}}
}

func (f *fakeDownloads) PutDownload(_ context.Context, d analytics.Download) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ds[d.ID] = d
	return nil
}

func (f *fakeDownloads) Download(_ context.Context, id string) (analytics.Download, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.ds[id]
	return d, ok, nil
}

func (f *fakeDownloads) ActiveDownloads(_ context.Context, account string, since time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.ds {
		if d.Account == account && d.Status == analytics.DownloadPending && !d.Updated.Before(since) {
			n++
		}
	}
	return n, nil
}

func (f *fakeDownloads) WriteDownloadPart(_ context.Context, d analytics.Download, part uint32, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(part) != len(f.parts[d.ID]) {
		return errors.New("parts out of order")
	}
	f.parts[d.ID] = append(f.parts[d.ID], append([]byte(nil), data...))
	return nil
}

func (f *fakeDownloads) DownloadPart(_ context.Context, id string, part uint32) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.parts[id][part]), nil
}

func (f *fakeDownloads) DropExpiredDownloads(context.Context, time.Time) error { return nil }

func (f *fakeDownloads) ExportActivity(_ context.Context, _ string, flt *analytics.ActivityFilter, from, _ time.Time, limit int,
	total func(uint64), each func(*analytics.ExportEvent) error) error {
	f.mu.Lock()
	f.filter, f.from = flt, from
	f.mu.Unlock()
	total(uint64(min(limit, len(f.events))))
	if f.hold != nil {
		<-f.hold
	}
	if f.fail != nil {
		return f.fail
	}
	for i := range f.events {
		if err := each(&f.events[i]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDownloads) get(id string) analytics.Download {
	d, _, _ := f.Download(context.Background(), id)
	return d
}

// waitStatus waits (generously) until download id leaves pending.
func waitStatus(t *testing.T, f *fakeDownloads, id string) analytics.Download {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if d := f.get(id); d.Status != analytics.DownloadPending {
			return d
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("download %s still pending", id)
	return analytics.Download{}
}

func TestActivityDownload(t *testing.T) {
	token, k := testKey(t, "acme", false)
	other, ko := testKey(t, "globex", false)
	c := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	fd := newFakeDownloads()
	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	fd.events = []analytics.ExportEvent{
		{Time: at, MsgID: "m1", Event: "delivered", Email: "ann@example.com", FromEmail: "news@acme.org", Subject: "Hi", SGEventID: "e1", Categories: []string{"news"}},
		{Time: at, MsgID: "m2", Event: "bounce", Email: "=cmd|'/C calc'!A0@evil.example", Reason: "550 user unknown", Type: "bounce", SGEventID: "e2", AsmGroupID: 7},
	}
	fd.hold = make(chan struct{})
	h := NewServer(Config{Store: &fakeStore{}, Downloads: fd, Keys: fakeKeys{k, ko}, Now: c.now, RateLimit: 1000, PublicURL: "https://api.example.com/"})

	rec := do(t, h, "POST", "/v3/messages/download?query="+url.QueryEscape(`status="delivered"`), token, "")
	var started struct{ Status, Message, Download_uuid string }
	if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &started) != nil || started.Status != "pending" || started.Download_uuid == "" {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	id := started.Download_uuid
	// While it is written (the export counted its events and is held):
	// its progress, and no second one for the account.
	for deadline := time.Now().Add(30 * time.Second); fd.get(id).Total == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	rec = do(t, h, "GET", "/v3/messages/download/"+id, token, "")
	if rec.Code != 202 || !strings.Contains(rec.Body.String(), `"total":2`) {
		t.Errorf("pending: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, h, "POST", "/v3/messages/download", token, ""); rec.Code != 429 {
		t.Errorf("a second download while one is pending: %d %s, want 429", rec.Code, rec.Body)
	}
	// Another account neither sees it nor is held back by it.
	if rec := do(t, h, "GET", "/v3/messages/download/"+id, other, ""); rec.Code != 404 {
		t.Errorf("another account's GET: %d %s", rec.Code, rec.Body)
	}
	close(fd.hold)
	if d := waitStatus(t, fd, id); d.Status != analytics.DownloadReady || d.Rows != 2 || d.Parts != 1 {
		t.Fatalf("after the export: %+v", d)
	}
	if fd.filter == nil || fd.filter.Field != "status" || !fd.from.Equal(c.now().Add(-30*24*time.Hour)) {
		t.Errorf("exported with filter %+v from %v", fd.filter, fd.from)
	}
	rec = do(t, h, "GET", "/v3/messages/download/"+id, token, "")
	var ready struct {
		PresignedURL string `json:"presigned_url"`
		Rows         int
	}
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &ready) != nil || ready.Rows != 2 ||
		!strings.HasPrefix(ready.PresignedURL, "https://api.example.com/bouncer/v1/messages/download/"+id+"/file?") {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
	link := strings.TrimPrefix(ready.PresignedURL, "https://api.example.com")
	rec = do(t, h, "GET", link, "", "")
	want := "event_time,msg_id,event,to_email,from_email,subject,status,reason,type,bounce_type,url,user_agent,ip,categories,asm_group_id,sg_event_id\n" +
		`2026-12-02 09:30:00,m1,delivered,ann@example.com,news@acme.org,Hi,,,,,,,,"[""news""]",,e1` + "\n" +
		`2026-12-02 09:30:00,m2,bounce,'=cmd|'/C calc'!A0@evil.example,,,,550 user unknown,bounce,,,,,[],7,e2` + "\n"
	if rec.Code != 200 || rec.Body.String() != want || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") {
		t.Errorf("file: %d %q\nwant %q", rec.Code, rec.Body, want)
	}
	// A link with another signature or expiry, or past its five minutes,
	// does not work; the download can be asked for a new one.
	u, _ := url.Parse(link)
	q := u.Query()
	q.Set("expires", "9999999999")
	if rec := do(t, h, "GET", u.Path+"?"+q.Encode(), "", ""); rec.Code != 404 {
		t.Errorf("changed expiry: %d", rec.Code)
	}
	q = u.Query()
	q.Set("signature", strings.Repeat("0", 64))
	if rec := do(t, h, "GET", u.Path+"?"+q.Encode(), "", ""); rec.Code != 404 {
		t.Errorf("changed signature: %d", rec.Code)
	}
	c.add(6 * time.Minute)
	if rec := do(t, h, "GET", link, "", ""); rec.Code != 404 {
		t.Errorf("link after 6 minutes: %d", rec.Code)
	}
	if rec := do(t, h, "GET", "/v3/messages/download/"+id, token, ""); rec.Code != 200 {
		t.Errorf("a new link: %d %s", rec.Code, rec.Body)
	}
	// Three days after it was asked for, it is gone.
	c.add(72 * time.Hour)
	if rec := do(t, h, "GET", "/v3/messages/download/"+id, token, ""); rec.Code != 404 || !strings.Contains(rec.Body.String(), "invalid or expired") {
		t.Errorf("after 3 days: %d %s", rec.Code, rec.Body)
	}
	// A failed export says so.
	fd.hold, fd.fail = nil, errors.New("clickhouse: code 241: memory limit")
	rec = do(t, h, "POST", "/v3/messages/download", token, "")
	if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &started) != nil {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	waitStatus(t, fd, started.Download_uuid)
	rec = do(t, h, "GET", "/v3/messages/download/"+started.Download_uuid, token, "")
	if _, msg := sendGridError(t, rec); rec.Code != 404 || !strings.Contains(msg, "failed") || strings.Contains(msg, "memory") {
		t.Errorf("failed download: %d %s", rec.Code, rec.Body)
	}
	for _, p := range []string{"/v3/messages/download/not-a-uuid", "/v3/messages/download/00000000-0000-0000-0000-000000000000"} {
		if rec := do(t, h, "GET", p, token, ""); rec.Code != 404 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
	if rec := do(t, h, "POST", "/v3/messages/download?query="+url.QueryEscape(`subject="x"`), token, ""); rec.Code != 400 {
		t.Errorf("a bad query: %d %s", rec.Code, rec.Body)
	}
}

func TestPartWriter(t *testing.T) {
	var parts []int
	p := &partWriter{flush: func(b []byte) error { parts = append(parts, len(b)); return nil }}
	chunk := make([]byte, 3<<20)
	for range 6 { // 18 MiB: parts of 9, 9 MiB (each flushed once over 8)
		p.Write(chunk)
	}
	p.Close()
	if len(parts) != 2 || parts[0] != 9<<20 || parts[1] != 9<<20 {
		t.Errorf("parts %v", parts)
	}
}
