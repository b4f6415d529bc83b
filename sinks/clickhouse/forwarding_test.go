package clickhouse

import (
	"context"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
)

// TestForwardSettingsNewestWins: the newest version of a setting wins
// whatever order the writes arrive in, accounts never see each other's, and
// only enabled accounts with an address are listed for the forwarder.
func TestForwardSettingsNewestWins(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	t0 := time.Unix(1764201600, 0)

	got, err := s.ForwardBounce(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.Email != "" || !got.Updated.IsZero() {
		t.Fatalf("never set: %+v, want disabled with no address", got)
	}

	// Written newest first: the older write must not win.
	writes := []struct {
		account string
		fs      accounts.ForwardBounce
		at      time.Time
	}{
		{"acme", accounts.ForwardBounce{Enabled: true, Email: "new@acme.example"}, t0.Add(2 * time.Second)},
		{"acme", accounts.ForwardBounce{Enabled: false, Email: "old@acme.example"}, t0.Add(time.Second)},
		{"globex", accounts.ForwardBounce{Enabled: false, Email: "ops@globex.example"}, t0},
		{"initech", accounts.ForwardBounce{Enabled: true, Email: ""}, t0},
	}
	for _, w := range writes {
		if err := s.SetForwardBounce(ctx, w.account, w.fs, w.at); err != nil {
			t.Fatal(err)
		}
	}
	got, err = s.ForwardBounce(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.Email != "new@acme.example" || !got.Updated.Equal(t0.Add(2*time.Second)) {
		t.Errorf("acme: %+v, want the newest write (enabled, new@acme.example)", got)
	}
	got, err = s.ForwardBounce(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled || got.Email != "ops@globex.example" {
		t.Errorf("globex: %+v", got)
	}

	enabled, err := s.EnabledForwardBounces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(enabled) != 1 || enabled[0].AccountID != "acme" || enabled[0].Email != "new@acme.example" || !enabled[0].Enabled {
		t.Errorf("enabled settings %+v, want only acme's", enabled)
	}

	if err := s.SetForwardBounce(ctx, "acme", accounts.ForwardBounce{Enabled: false, Email: "new@acme.example"}, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if enabled, err = s.EnabledForwardBounces(ctx); err != nil || len(enabled) != 0 {
		t.Errorf("after disabling: %+v, %v; want none", enabled, err)
	}
	if err := s.SetForwardBounce(ctx, "", accounts.ForwardBounce{}, t0); err == nil {
		t.Error("a setting without an account was written")
	}
}
