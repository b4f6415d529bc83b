package api

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// fakePurge keeps settings per account in memory.
type fakePurge struct {
	mu     sync.Mutex
	set    map[string]accounts.BouncePurge
	writes int
}

func (f *fakePurge) BouncePurge(ctx context.Context, account string) (accounts.BouncePurge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set[account], nil
}

func (f *fakePurge) SetBouncePurge(ctx context.Context, account string, p accounts.BouncePurge, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.set == nil {
		f.set = map[string]accounts.BouncePurge{}
	}
	f.writes++
	f.set[account] = p
	return nil
}

func TestBouncePurgeSetting(t *testing.T) {
	token, k := testKey(t, "acme", false)
	other, ko := testKey(t, "globex", false)
	p := &fakePurge{}
	h := NewServer(Config{Store: &fakeStore{}, BouncePurge: p, Keys: fakeKeys{k, ko}, RateLimit: 1e6})
	const path = "/v3/mail_settings/bounce_purge"
	for _, step := range []struct{ method, body, want string }{
		{"GET", "", `{"enabled":false,"hard_bounces":null,"soft_bounces":null}`},
		{"PATCH", `{"enabled":true,"hard_bounces":30}`, `{"enabled":true,"hard_bounces":30,"soft_bounces":null}`},
		{"PATCH", `{"soft_bounces":7}`, `{"enabled":true,"hard_bounces":30,"soft_bounces":7}`},
		{"GET", "", `{"enabled":true,"hard_bounces":30,"soft_bounces":7}`},
		{"PATCH", `{"hard_bounces":null,"enabled":false}`, `{"enabled":false,"hard_bounces":null,"soft_bounces":7}`},
		{"PATCH", `{}`, `{"enabled":false,"hard_bounces":null,"soft_bounces":7}`},
		{"PATCH", `{"hard_bounces":3650}`, `{"enabled":false,"hard_bounces":3650,"soft_bounces":7}`},
	} {
		rec := do(t, h, step.method, path, token, step.body)
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != step.want {
			t.Errorf("%s %s: %d %s, want %s", step.method, step.body, rec.Code, rec.Body, step.want)
		}
	}
	if p.writes != 4 {
		t.Errorf("%d writes, want 4 (an empty patch writes nothing)", p.writes)
	}
	if rec := do(t, h, "GET", path, other, ""); strings.TrimSpace(rec.Body.String()) != `{"enabled":false,"hard_bounces":null,"soft_bounces":null}` {
		t.Errorf("globex sees %s", rec.Body)
	}
	for body, field := range map[string]string{
		`{"hard_bounces":0}`:     "hard_bounces",
		`{"soft_bounces":3651}`:  "soft_bounces",
		`{"hard_bounces":"30"}`:  "hard_bounces",
		`{"hard_bounces":1.5}`:   "hard_bounces",
		`{"enabled":null}`:       "enabled",
		`{"enabled":"yes"}`:      "enabled",
		`{"purge_after":30}`:     "purge_after",
		`{"enabled":true,"x":1}`: "x",
	} {
		rec := do(t, h, "PATCH", path, token, body)
		if rec.Code != 400 {
			t.Errorf("%s: %d %s, want 400", body, rec.Code, rec.Body)
		} else if f, _ := sendGridError(t, rec); f == nil || *f != field {
			t.Errorf("%s: field %v, want %s", body, f, field)
		}
	}
	h = NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1e6})
	if rec := do(t, h, "GET", path, token, ""); rec.Code != 404 {
		t.Errorf("without a store: %d", rec.Code)
	}
}
