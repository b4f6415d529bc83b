package enrich

import "testing"

// providerRef is the plain definition ProviderForDomain must agree with:
// the domain lower-cased, then it and its parent domains looked up in
// providerDomains, the longest first.
func providerRef(domain string) string {
	d := []byte(domain)
	for i, c := range d {
		if c >= 'A' && c <= 'Z' {
			d[i] = c + 'a' - 'A'
		}
	}
	for s := string(d); s != ""; {
		if p, ok := providerDomains[s]; ok {
			return p
		}
		dot := 0
		for dot < len(s) && s[dot] != '.' {
			dot++
		}
		if dot == len(s) {
			return ""
		}
		s = s[dot+1:]
	}
	return ""
}

func TestProviderForDomain(t *testing.T) {
	domains := []string{"", ".", "gmail.com", "GMail.Com", "mx.gmail.com", "a.b.yahoo.co.uk", "yahoo.co", "co.uk",
		"examplegmail.com", "gmail.com.", ".gmail.com", "web.de", "xweb.de", "163.com", "outlook.com.au", "live.com.au",
		"example.com", "mail.ru", "MAIL.RU", "qq.com", "com"}
	for d := range providerDomains {
		domains = append(domains, d, "x."+d, "x"+d, d[1:])
	}
	for _, d := range domains {
		if got, want := ProviderForDomain(d), providerRef(d); got != want {
			t.Errorf("ProviderForDomain(%q) = %q, want %q", d, got, want)
		}
	}
	if got := ProviderForDomain(domainPart(" Kim <kim@Mail.GMAIL.com> ")); got != "google" {
		t.Errorf("provider of a written address = %q, want google", got)
	}
}
