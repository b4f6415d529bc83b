package enrich

import "strings"

// Mailbox providers known to bouncer. Provider ids are stable lower-case
// names; they appear in the events table, in stats by mailbox provider, and
// in the rules file's provider= condition.
//
// The provider is found without DNS: first from the recipient domain (a
// static table of consumer domains), then from markers that providers put in
// their own SMTP replies ("gsmtp", "protection.outlook.com"), which also
// catches company domains hosted by those providers.

// providerDomains maps a recipient domain to its provider id.
var providerDomains = map[string]string{}

// domainTable is providerDomains as an open-addressing hash table keyed by
// domainHash, so that a lookup hashes the domain once for all its suffixes
// and allocates nothing.
var domainTable struct {
	hashes []uint32
	keys   []string
	vals   []string
	mask   uint32
}

func init() {
	for provider, domains := range map[string][]string{
		"google": {"gmail.com", "googlemail.com", "google.com"},
		"microsoft": {"outlook.com", "hotmail.com", "live.com", "msn.com", "passport.com",
			"hotmail.co.uk", "hotmail.fr", "hotmail.de", "hotmail.it", "hotmail.es",
			"live.co.uk", "live.fr", "live.de", "live.nl", "live.com.au", "outlook.fr",
			"outlook.de", "outlook.es", "outlook.it", "outlook.jp", "hotmail.co.jp", "windowslive.com"},
		"yahoo": {"yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.fr",
			"yahoo.de", "yahoo.it", "yahoo.es", "yahoo.ca", "yahoo.com.au", "yahoo.co.in",
			"yahoo.com.br", "yahoo.co.jp", "aol.com", "aim.com", "aol.co.uk", "aol.fr",
			"aol.de", "verizon.net", "aol.it"},
		"apple":      {"icloud.com", "me.com", "mac.com"},
		"comcast":    {"comcast.net", "xfinity.com"},
		"att":        {"att.net", "sbcglobal.net", "bellsouth.net", "pacbell.net", "swbell.net", "flash.net", "prodigy.net"},
		"charter":    {"charter.net", "spectrum.net", "twc.com", "roadrunner.com", "rr.com"},
		"cox":        {"cox.net"},
		"proton":     {"protonmail.com", "proton.me", "pm.me", "protonmail.ch"},
		"zoho":       {"zoho.com", "zohomail.com"},
		"fastmail":   {"fastmail.com", "fastmail.fm"},
		"gmx":        {"gmx.com", "gmx.net", "gmx.de", "gmx.at", "gmx.ch", "web.de"},
		"orange":     {"orange.fr", "wanadoo.fr"},
		"free":       {"free.fr"},
		"yandex":     {"yandex.ru", "yandex.com", "ya.ru"},
		"mailru":     {"mail.ru", "bk.ru", "inbox.ru", "list.ru"},
		"tencent":    {"qq.com", "foxmail.com"},
		"netease":    {"163.com", "126.com", "yeah.net"},
		"naver":      {"naver.com"},
		"t-online":   {"t-online.de"},
		"libero":     {"libero.it"},
		"seznam":     {"seznam.cz"},
		"rediffmail": {"rediffmail.com"},
	} {
		for _, d := range domains {
			providerDomains[d] = provider
		}
	}
	size := 1
	for size < 4*len(providerDomains) {
		size *= 2
	}
	t := &domainTable
	t.hashes, t.keys, t.vals, t.mask = make([]uint32, size), make([]string, size), make([]string, size), uint32(size-1)
	for d, p := range providerDomains {
		h := domainHash(d)
		i := h & t.mask
		for t.keys[i] != "" {
			i = (i + 1) & t.mask
		}
		t.hashes[i], t.keys[i], t.vals[i] = h, d, p
	}
}

// providerMarkers are lower-case substrings of SMTP replies that name the
// provider that produced them, tried in order.
var providerMarkers = []struct{ marker, provider string }{
	{"gsmtp", "google"},
	{"support.google.com", "google"},
	{"protection.outlook.com", "microsoft"},
	{"prod.outlook.com", "microsoft"},
	{"outlook.com", "microsoft"},
	{"yahoo", "yahoo"},
	{"mimecast", "mimecast"},
	{"pphosted.com", "proofpoint"},
	{"proofpoint", "proofpoint"},
	{"barracuda", "barracuda"},
	{"iphmx.com", "cisco"},
	{"ironport", "cisco"},
	{"icloud.com", "apple"},
}

// domainHash is FNV-1a over s read backwards, each byte ORed with 0x20
// (which lower-cases letters and keeps digits, '.' and '-'): the hash of a
// domain extends the hash of its parent domain, as ProviderForDomain uses.
func domainHash(s string) uint32 {
	h := uint32(2166136261)
	for i := len(s) - 1; i >= 0; i-- {
		h = (h ^ uint32(s[i]|0x20)) * 16777619
	}
	return h
}

// ProviderForDomain returns the provider of a recipient domain, or "" when
// the domain is not in the table. Subdomains of a known domain belong to its
// provider. Letters are compared without case.
func ProviderForDomain(domain string) string {
	// One pass from the end hashes every suffix that starts a label; the
	// longest one in the table decides.
	provider := ""
	h := uint32(2166136261)
	for i := len(domain) - 1; i >= 0; i-- {
		c := domain[i] | 0x20
		if c == '.' {
			if p := lookupDomain(h, domain[i+1:]); p != "" {
				provider = p
			}
		}
		h = (h ^ uint32(c)) * 16777619
	}
	if p := lookupDomain(h, domain); p != "" {
		provider = p
	}
	return provider
}

func lookupDomain(h uint32, domain string) string {
	t := &domainTable
	for k := h & t.mask; t.keys[k] != ""; k = (k + 1) & t.mask {
		if t.hashes[k] == h && equalFold20(domain, t.keys[k]) {
			return t.vals[k]
		}
	}
	return ""
}

// equalFold20 reports whether s, each byte ORed with 0x20, equals key (a
// lower-case domain: letters, digits, '.' and '-', which the OR keeps).
func equalFold20(s, key string) bool {
	if len(s) != len(key) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i]|0x20 != key[i] {
			return false
		}
	}
	return true
}

// DomainOf returns the lower-cased domain part of an address ("" if none).
func DomainOf(email string) string {
	return strings.ToLower(domainPart(email))
}

// domainPart returns the domain part of an address as written, without
// surrounding white space and trailing dots or '>'.
func domainPart(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return ""
	}
	d := email[at+1:]
	for len(d) > 0 && asciiSpace(d[0]) {
		d = d[1:]
	}
	for len(d) > 0 {
		switch c := d[len(d)-1]; {
		case c == '.' || c == '>' || asciiSpace(c):
			d = d[:len(d)-1]
			continue
		}
		break
	}
	return d
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
