package enrich

import (
	"path/filepath"
	"testing"

	"github.com/bouncer-mail/bouncer/internal/geotest"
)

func TestGeo(t *testing.T) {
	g, err := OpenGeo(geotest.WriteDB(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for ip, want := range map[string]Place{
		"203.0.113.7":        {"US", "TX"},
		" 198.51.100.200 ":   {"CA", "ON"},
		"::ffff:203.0.113.9": {"US", "TX"},
		"2001:db8::1":        {"DE", ""},
		"192.0.2.1":          {},
		"not an address":     {},
		"":                   {},
	} {
		if got := g.Lookup(ip); got != want {
			t.Errorf("%q: %+v, want %+v", ip, got, want)
		}
		if got := g.Lookup(ip); got != want {
			t.Errorf("%q again: %+v", ip, got)
		}
	}
	if _, err := OpenGeo(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("a missing database: no error")
	}
}
