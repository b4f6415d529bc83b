package enrich

import (
	"fmt"
	"net/netip"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Place is where an address is: its country (ISO 3166-1 alpha-2, e.g.
// "US") and region (the ISO 3166-2 code of its first subdivision without
// the country, e.g. "TX"); empty when unknown.
type Place struct {
	Country, Region string
}

// Geo looks addresses up in a MaxMind-format database (GeoIP2 or
// GeoLite2 City or Country, DB-IP's and IPinfo's lite databases in that
// format), read with github.com/oschwald/maxminddb-golang, remembering
// the last few thousand addresses. Safe for concurrent use.
type Geo struct {
	db    *maxminddb.Reader
	cache *lru.Cache[string, Place]
}

// OpenGeo opens the database at path.
func OpenGeo(path string) (*Geo, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: %w (a MaxMind-format .mmdb file, e.g. GeoLite2-City.mmdb; see docs/analytics.md)", path, err)
	}
	c, _ := lru.New[string, Place](8192)
	return &Geo{db: db, cache: c}, nil
}

// Close closes the database.
func (g *Geo) Close() error { return g.db.Close() }

// geoRecord is the part of a City or Country record Lookup reads.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
}

// Lookup returns where ip (text) is; the zero Place when it is not an
// address or the database does not know it.
func (g *Geo) Lookup(ip string) Place {
	ip = strings.TrimSpace(ip)
	if ip == "" {
		return Place{}
	}
	if p, ok := g.cache.Get(ip); ok {
		return p
	}
	var p Place
	if addr, err := netip.ParseAddr(ip); err == nil {
		var rec geoRecord
		if err := g.db.Lookup(addr.Unmap()).Decode(&rec); err == nil {
			p.Country = strings.ToUpper(rec.Country.ISOCode)
			if len(rec.Subdivisions) > 0 {
				p.Region = strings.ToUpper(rec.Subdivisions[0].ISOCode)
			}
		}
	}
	g.cache.Add(ip, p)
	return p
}
