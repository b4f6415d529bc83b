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

// ProviderForDomain returns the provider of a recipient domain (lower-case),
// or "" when the domain is not in the table. Subdomains of a known domain
// belong to its provider.
func ProviderForDomain(domain string) string {
	for domain != "" {
		if p, ok := providerDomains[domain]; ok {
			return p
		}
		dot := strings.IndexByte(domain, '.')
		if dot < 0 {
			return ""
		}
		domain = domain[dot+1:]
	}
	return ""
}

// DomainOf returns the lower-cased domain part of an address ("" if none).
func DomainOf(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return ""
	}
	d := strings.TrimRight(strings.TrimSpace(email[at+1:]), ".>")
	return strings.ToLower(d)
}
