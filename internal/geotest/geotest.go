// Package geotest writes small MaxMind-format databases for tests and the
// bench (with github.com/maxmind/mmdbwriter), so code that reads
// BOUNCER_GEOIP_DB is tested without a real GeoIP database.
package geotest

import (
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// TB is the part of testing.TB WriteDB uses (so that the bench, which
// calls Write, does not link package testing into bouncer).
type TB interface {
	Helper()
	Fatal(args ...any)
}

// WriteDB writes a small GeoIP2-City-shaped database to a file of
// dir: 203.0.113.0/24 in Texas, US; 198.51.100.0/24 in Ontario, CA;
// 2001:db8::/32 in DE without a region. It returns the file's path.
func WriteDB(t TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "test-city.mmdb")
	if err := Write(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Write writes WriteDB's database to path (bouncer bench places the ips
// of its generated opens and clicks with it).
func Write(path string) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		return err
	}
	place := func(country, region string) mmdbtype.Map {
		m := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(country)}}
		if region != "" {
			m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(region)}}
		}
		return m
	}
	for cidr, p := range map[string]mmdbtype.Map{"203.0.113.0/24": place("US", "TX"), "198.51.100.0/24": place("CA", "ON"), "2001:db8::/32": place("DE", "")} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, p); err != nil {
			return err
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
