package clickhouse

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

func TestExportActivity(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	rows := statsFixture()
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	from, to := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	// What the export must give: acme's events in the range, each
	// sg_event_id once, newest first (ties by sg_event_id).
	type ev struct {
		at  int64
		id  string
		msg string
	}
	expect := func(msg string, limit int) []string {
		seen := map[string]bool{}
		var evs []ev
		for _, r := range rows {
			if r.AccountID != "acme" || r.Timestamp < from.Unix() || r.Timestamp >= to.Unix() || seen[r.SGEventID] || (msg != "" && r.SGMessageID != msg) {
				continue
			}
			seen[r.SGEventID] = true
			evs = append(evs, ev{r.Timestamp, r.SGEventID, r.SGMessageID})
		}
		sort.Slice(evs, func(i, j int) bool {
			if evs[i].at != evs[j].at {
				return evs[i].at > evs[j].at
			}
			return evs[i].id < evs[j].id
		})
		var ids []string
		for _, e := range evs[:min(limit, len(evs))] {
			ids = append(ids, e.id)
		}
		return ids
	}
	export := func(f *analytics.ActivityFilter, limit int) ([]string, uint64) {
		t.Helper()
		var ids []string
		var total uint64
		err := s.ExportActivity(ctx, "acme", f, from, to, limit, func(n uint64) { total = n }, func(e *analytics.ExportEvent) error {
			if e.MsgID == "" || e.Time.IsZero() {
				t.Errorf("event without message or time: %+v", e)
			}
			ids = append(ids, e.SGEventID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids, total
	}
	all := expect("", 1<<30)
	if len(all) < 300 {
		t.Fatalf("fixture: %d events", len(all))
	}
	if got, total := export(nil, 1<<20); !slices.Equal(got, all) || total != uint64(len(all)) {
		t.Errorf("every message: %d events (total %d), want %d", len(got), total, len(all))
	}
	// At most limit: the newest.
	if got, total := export(nil, 25); !slices.Equal(got, all[:25]) || total != 25 {
		t.Errorf("limit 25: %v (total %d)\nwant %v", got, total, all[:25])
	}
	f, err := analytics.ParseActivityQuery(`msg_id="msg05"`)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := export(f, 1<<20); !slices.Equal(got, expect("msg05", 1<<30)) || len(got) == 0 {
		t.Errorf("msg05: %v, want %v", got, expect("msg05", 1<<30))
	}
}

func TestDownloadStates(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	d := analytics.Download{ID: "11111111-1111-1111-1111-111111111111", Account: "acme", Query: `msg_id="x"`, Status: analytics.DownloadPending,
		Token: "t0k", Created: now, Updated: now, Expires: now.Add(72 * time.Hour)}
	if err := s.PutDownload(ctx, d); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ActiveDownloads(ctx, "acme", now.Add(-time.Minute)); err != nil || n != 1 {
		t.Errorf("active: %d %v", n, err)
	}
	if n, _ := s.ActiveDownloads(ctx, "acme", now.Add(time.Minute)); n != 0 {
		t.Errorf("active since after its last update: %d", n)
	}
	big := strings.Repeat("a,b,c\n", 300000)
	for i, part := range []string{big, "tail\n"} {
		if err := s.WriteDownloadPart(ctx, d, uint32(i), []byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	d.Status, d.Rows, d.Parts, d.Bytes, d.Updated = analytics.DownloadReady, 300001, 2, uint64(len(big)+5), now.Add(time.Second)
	if err := s.PutDownload(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Download(ctx, d.ID)
	if err != nil || !ok || got != d {
		t.Errorf("Download: %+v %v %v\nwant %+v", got, ok, err, d)
	}
	if n, _ := s.ActiveDownloads(ctx, "acme", now.Add(-time.Minute)); n != 0 {
		t.Errorf("active after ready: %d", n)
	}
	if _, ok, _ := s.Download(ctx, "22222222-2222-2222-2222-222222222222"); ok {
		t.Error("a download that does not exist")
	}
	for i, want := range []string{big, "tail\n"} {
		if b, err := s.DownloadPart(ctx, d.ID, uint32(i)); err != nil || b != want {
			t.Errorf("part %d: %d bytes, %v", i, len(b), err)
		}
	}
	// Its file stays until the day after it expired.
	if err := s.DropExpiredDownloads(ctx, d.Expires); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DownloadPart(ctx, d.ID, 1); err != nil {
		t.Errorf("dropped on the day it expires: %v", err)
	}
	if err := s.DropExpiredDownloads(ctx, d.Expires.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DownloadPart(ctx, d.ID, 1); err == nil {
		t.Error("the file is still there the day after it expired")
	}
}
