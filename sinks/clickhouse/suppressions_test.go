package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

func emailsOf(t *testing.T, s *Store, account string, q suppression.Query) []string {
	t.Helper()
	es, err := s.Suppressions(context.Background(), account, q)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.EmailNorm)
	}
	return out
}

func TestSuppressionsNewestVersionWins(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Unix(1764201600, 0).UTC()
	add := func(acct, email string, at time.Time) suppression.Change {
		return suppression.Change{AccountID: acct, List: "bounces", EmailNorm: email, Email: email, At: at, Reason: "550 gone", Status: "5.1.1"}
	}
	del := func(acct, email string, at time.Time) suppression.Change {
		c := add(acct, email, at)
		c.Deleted, c.Reason, c.Status = true, "", ""
		return c
	}
	// Each write is its own insert (its own part), in the order given.
	for _, c := range []suppression.Change{
		add("a", "early@x.org", t0), del("a", "early@x.org", t0.Add(10*time.Second)), add("a", "early@x.org", t0.Add(5*time.Second)),
		del("a", "late@x.org", t0), add("a", "late@x.org", t0.Add(time.Second)),
		add("a", "tie@x.org", t0), del("a", "tie@x.org", t0),
		add("a", "kept_1@x.org", t0.Add(2*time.Second)), add("a", "kept%2@x.org", t0.Add(3*time.Second)),
		add("b", "other@x.org", t0),
	} {
		if err := s.WriteSuppressions(ctx, []suppression.Change{c}); err != nil {
			t.Fatal(err)
		}
	}
	got := emailsOf(t, s, "a", suppression.Query{List: "bounces"})
	if want := []string{"kept%2@x.org", "kept_1@x.org", "late@x.org"}; !slices.Equal(got, want) {
		t.Errorf("account a, bounces: %v, want %v (newest first)", got, want)
	}
	if got := emailsOf(t, s, "a", suppression.Query{List: "bounces", EmailLike: `kept\_%`}); !slices.Equal(got, []string{"kept_1@x.org"}) {
		t.Errorf("escaped _ pattern: %v", got)
	}
	if got := emailsOf(t, s, "a", suppression.Query{List: "bounces", From: uint32(t0.Unix()) + 2, To: uint32(t0.Unix()) + 2}); !slices.Equal(got, []string{"kept_1@x.org"}) {
		t.Errorf("created in [t0+2, t0+2]: %v", got)
	}
	if got := emailsOf(t, s, "a", suppression.Query{List: "bounces", Offset: 1, Limit: 1}); !slices.Equal(got, []string{"kept_1@x.org"}) {
		t.Errorf("offset 1 limit 1: %v", got)
	}

	// An entry dated after the delete (in 2100, from before events were
	// bounded) goes too: its removal is stamped at its own time.
	if err := s.WriteSuppressions(ctx, []suppression.Change{add("a", "y2100@x.org", time.Unix(4102444800, 0))}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAllSuppressions(ctx, "a", "bounces", 0, t0.Add(time.Hour), "api"); err != nil {
		t.Fatal(err)
	}
	if got := emailsOf(t, s, "a", suppression.Query{List: "bounces"}); len(got) != 0 {
		t.Errorf("after delete all: %v", got)
	}
	if got := emailsOf(t, s, "b", suppression.Query{List: "bounces"}); !slices.Equal(got, []string{"other@x.org"}) {
		t.Errorf("account b after a's delete all: %v", got)
	}
}

func TestBounceClassificationCounts(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	day := time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC)
	inv := enrich.Result{BounceType: enrich.Hard, Classification: enrich.InvalidAddress}
	rep := enrich.Result{BounceType: enrich.Soft, Classification: enrich.Reputation}
	ev := func(off int64, acct, id, domain string, at time.Time, r *enrich.Result) pipeline.Row {
		return pipeline.Row{Event: schemas.Event{Topic: "t", Offset: off, Event: "bounce", AccountID: acct, SGEventID: id,
			Email: "u@" + domain, EmailNorm: "u@" + domain, Domain: domain, Timestamp: at.Unix()}, Bounce: r}
	}
	rows := []pipeline.Row{
		ev(0, "a", "e1", "x.org", day.Add(time.Hour), &inv),
		ev(1, "a", "e1", "x.org", day.Add(time.Hour), &inv), // a resend: counted once
		ev(2, "a", "e2", "y.org", day.Add(2*time.Hour), &inv),
		ev(3, "a", "e3", "x.org", day.Add(3*time.Hour), &rep),
		ev(4, "a", "e4", "x.org", day.Add(25*time.Hour), &rep),
		ev(5, "b", "e5", "x.org", day.Add(time.Hour), &inv),
	}
	if err := s.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
	got, err := s.BounceClassifications(ctx, "a", day, day.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := []analytics.DayCount{{Day: "2025-11-27", Key: "Invalid Address", N: 2}, {Day: "2025-11-27", Key: "Reputation", N: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("classifications: %v, want %v", got, want)
	}
	got, err = s.BounceClassificationDomains(ctx, "a", "Invalid Address", day, day.AddDate(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	want = []analytics.DayCount{{Day: "2025-11-27", Key: "x.org", N: 1}, {Day: "2025-11-27", Key: "y.org", N: 1}}
	if !slices.Equal(got, want) {
		t.Errorf("domains: %v, want %v", got, want)
	}
}

func TestAPIKeysRevoke(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Unix(1764201600, 0)
	k := accounts.Key{AccountID: "acme", KeyID: "id1", Hash: "h", Name: "mta", Scopes: []string{"suppression.read"}, Created: t0}
	if err := s.WriteAPIKey(ctx, k, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAPIKey(ctx, accounts.Key{AccountID: "other", KeyID: "id2", Hash: "h2", Created: t0}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeAPIKey(ctx, "nope", t0); err == nil {
		t.Error("revoking an unknown key: no error")
	}
	if _, err := s.RevokeAPIKey(ctx, "id1", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	keys, err := s.APIKeys(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !keys[0].Revoked || keys[0].Name != "mta" || !slices.Equal(keys[0].Scopes, k.Scopes) || keys[0].Hash != "h" {
		t.Errorf("acme's keys after revoke: %+v", keys)
	}
	if all, _ := s.APIKeys(ctx, ""); len(all) != 2 {
		t.Errorf("all keys: %+v", all)
	}
}
