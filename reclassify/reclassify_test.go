package reclassify_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/reclassify"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

// published records what a run announces on the change log.
type published struct {
	mu  sync.Mutex
	got []suppression.Change
}

func (p *published) PublishChanges(_ context.Context, cs []suppression.Change) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, cs...)
	return nil
}

const operatorRules = `
acme.full   mailbox_full   text: box stuffed
acme.gone   user_unknown   text: zorgle gone forever
`

// TestReclassifyStoredBounces stores bounces and the list changes the sink
// made of them under the built-in rules, then re-classifies with operator
// rules: the dry run counts the changes without storing any, the run
// stores the new classifications, takes off bounces only the addresses
// nothing else keeps there, adds the newly hard-bounced ones unless a
// later delete wins, announces each list change with its version, and the
// stats read the new reasons from the rollups once rebuilt. A second run
// finds nothing to do.
func TestReclassifyStoredBounces(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	cfg := clickhouse.Config{Addr: []string{addr}, Database: db}
	ctx := context.Background()
	if _, err := clickhouse.Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	store, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	clickhouse.ReclassifyWait = 2 * time.Second

	builtin := enrich.MustNew()
	ops, err := enrich.ParseRules(strings.NewReader(operatorRules), "ops.rules")
	if err != nil {
		t.Fatal(err)
	}
	current := enrich.MustNew(ops...)

	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	at := func(h int) int64 { return day.Add(time.Duration(h) * time.Hour).Unix() }
	var rows []pipeline.Row
	var sups []suppression.Change
	bounce := func(account, email, reason string, ts int64) {
		ev := schemas.Event{Topic: "t", Partition: 1, Offset: int64(len(rows)), Event: "bounce", Type: "bounce",
			Email: email, EmailNorm: email, AccountID: account, Timestamp: ts, Reason: reason, AddressValid: true,
			SGEventID: fmt.Sprintf("ev%d", len(rows)), SGMessageID: fmt.Sprintf("m%d", len(rows))}
		res, err := builtin.Classify(enrich.Input{Event: "bounce", Type: "bounce", Reason: reason, Email: email})
		if err != nil {
			t.Fatal(err)
		}
		r := pipeline.Row{Event: ev, Bounce: &res}
		rows = append(rows, r)
		if l := pipeline.ListOf(&r); l != "" {
			sups = append(sups, suppression.Change{AccountID: account, List: l, EmailNorm: email, Email: email, At: time.Unix(ts, 0).UTC(),
				Reason: reason, Classification: string(res.Classification), ReasonCode: string(res.Reason), Source: "event:" + ev.SGEventID})
		}
	}
	userDelete := func(account, email string, ts int64) {
		sups = append(sups, suppression.Change{AccountID: account, List: suppression.ListBounces, EmailNorm: email, Email: email,
			At: time.Unix(ts, 0).UTC(), Deleted: true, Source: suppression.SourceAPI})
	}
	stuffed := "550 5.1.1 box stuffed"
	gone := "550 zorgle gone forever"
	bounce("acme", "kim@example.org", stuffed, at(1)) // hard by its code: leaves bounces
	bounce("acme", "lee@example.org", "550 5.1.1 user unknown", at(0))
	bounce("acme", "lee@example.org", stuffed, at(2)) // leaves, but the bounce at 0 keeps lee there
	bounce("acme", "ann@example.org", stuffed, at(3))
	userDelete("acme", "ann@example.org", at(4))   // already off: nothing to write
	bounce("acme", "bob@example.org", gone, at(5)) // soft before (reply 550 alone): joins bounces
	userDelete("acme", "cat@example.org", at(5))
	bounce("acme", "cat@example.org", gone, at(6)) // joins: the delete was earlier
	bounce("acme", "dan@example.org", gone, at(7))
	userDelete("acme", "dan@example.org", at(8)) // the user's later delete wins
	bounce("other", "kim@example.org", stuffed, at(1))
	bounce("acme", "eve@example.org", "550 5.1.1 The email account that you tried to reach does not exist.", at(9)) // unchanged
	if err := store.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteSuppressions(ctx, sups); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RebuildRollups(ctx, clickhouse.RollupOptions{From: day, To: day.AddDate(0, 0, 1)}); err != nil {
		t.Fatal(err)
	}

	pub := &published{}
	rc := reclassify.Config{Classifier: current, Store: store, Lists: suppression.Writer{Store: store, Changes: pub}, Chunk: 3}
	w := reclassify.Window{Account: "acme", Since: day, Until: day.AddDate(0, 0, 1)}
	dry, err := reclassify.Run(ctx, rc, w, false)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Read != 8 || dry.Changed != 6 || dry.Applied {
		t.Errorf("dry run: read %d, changed %d, applied %v; want 8 read, 6 changed, not applied", dry.Read, dry.Changed, dry.Applied)
	}
	if dry.Moves["bounces -> -"] != 3 || dry.Moves["- -> bounces"] != 3 {
		t.Errorf("dry run moves %v, want 3 off bounces and 3 onto it", dry.Moves)
	}
	if len(dry.Rows) != 2 || dry.Rows[0].Count != 3 || len(dry.Rows[0].Examples) == 0 {
		t.Errorf("dry run diff %+v, want two pairs of 3 with examples", dry.Rows)
	}
	if len(pub.got) != 0 {
		t.Fatalf("the dry run published %v", pub.got)
	}
	if n := reasonCount(t, store, "acme", "mailbox_full"); n != 0 {
		t.Fatalf("the dry run stored something: %d mailbox_full", n)
	}

	rep, err := reclassify.Run(ctx, rc, w, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 6 || rep.Read != 8 || rep.ListChanges != 3 {
		t.Errorf("run: changed %d, read %d, list changes %d; want 6, 8, 3", rep.Changed, rep.Read, rep.ListChanges)
	}
	var got []string
	for _, c := range pub.got {
		got = append(got, fmt.Sprintf("%s %s %v v%d %s", c.EmailNorm, c.List, c.Deleted, c.Version(), c.Source))
	}
	sort.Strings(got)
	want := []string{
		fmt.Sprintf("bob@example.org bounces false v%d event:ev4", 2*at(5)),
		fmt.Sprintf("cat@example.org bounces false v%d event:ev5", 2*at(6)),
		fmt.Sprintf("kim@example.org bounces true v%d reclassify", 2*at(1)+1),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("published:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	onList := map[string]bool{}
	if err := store.EachSuppression(ctx, "acme", suppression.ListBounces, 0, 0, func(e suppression.Entry) error {
		onList[e.EmailNorm] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for email, want := range map[string]bool{"kim": false, "lee": true, "ann": false, "bob": true, "cat": true, "dan": false, "eve": true} {
		if onList[email+"@example.org"] != want {
			t.Errorf("%s on bounces: %v, want %v", email, onList[email+"@example.org"], want)
		}
	}
	if n := reasonCount(t, store, "acme", "mailbox_full"); n != 3 {
		t.Errorf("stats after the run: %d mailbox_full bounces, want 3", n)
	}
	if n := reasonCount(t, store, "other", "mailbox_full"); n != 0 {
		t.Errorf("the other account was re-classified: %d mailbox_full", n)
	}
	// The days stay read from the events table until a build started
	// after the marks covers them; then the rollups hold the new reasons.
	time.Sleep(2*clickhouse.ReclassifyWait + 2*time.Second)
	if _, err := store.RebuildRollups(ctx, clickhouse.RollupOptions{From: day, To: day.AddDate(0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	status, err := store.RollupStatus(ctx, "acme", day, day.AddDate(0, 0, 1))
	if err != nil || status[day] != clickhouse.FromRollups {
		t.Fatalf("rollup status after the rebuild: %v, %v; want the day from the rollups", status, err)
	}
	if n := reasonCount(t, store, "acme", "mailbox_full"); n != 3 {
		t.Errorf("stats from the rollups: %d mailbox_full bounces, want 3", n)
	}

	pub.got = nil
	again, err := reclassify.Run(ctx, rc, w, true)
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed != 0 || again.RuleOnly != 0 || len(pub.got) != 0 {
		t.Errorf("second run changed %d+%d and published %v, want nothing", again.Changed, again.RuleOnly, pub.got)
	}
}

func reasonCount(t *testing.T, s *clickhouse.Store, account, reason string) uint64 {
	t.Helper()
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	rs, err := s.BounceReasons(context.Background(), account, day, day.AddDate(0, 0, 1), 100)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, r := range rs {
		if r.ReasonCode == reason {
			n += r.Bounces
		}
	}
	return n
}
