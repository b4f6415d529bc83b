package enrich

import (
	"strings"
	"testing"
)

func TestAgents(t *testing.T) {
	a, err := NewAgents(16)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ua   string
		want UserAgent
	}{
		{"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", UserAgent{"GmailImageProxy", "Gmail", DeviceWebmail}},
		{"YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", UserAgent{"YahooMailProxy", "Yahoo Mail", DeviceWebmail}},
		{"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)", UserAgent{"Outlook", "Outlook", DeviceDesktop}},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0", UserAgent{"Thunderbird", "Thunderbird", DeviceDesktop}},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)", UserAgent{"Apple Mail", "Apple Mail", DeviceDesktop}},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", UserAgent{"Mobile Safari UI/WKWebView", "Apple Mail", DevicePhone}},
		{"Mozilla/5.0 (iPad; CPU OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", UserAgent{"Mobile Safari UI/WKWebView", "Apple Mail", DeviceTablet}},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", UserAgent{"Chrome Mobile", "Chrome Mobile", DevicePhone}},
		{"Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", UserAgent{"Chrome", "Chrome", DeviceTablet}},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", UserAgent{"Chrome", "Chrome", DeviceWebmail}},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0", UserAgent{"Edge", "Edge", DeviceWebmail}},
		{"curl/8.4.0", UserAgent{"curl", "curl", DeviceOther}},
		{"", UserAgent{}},
		{"   ", UserAgent{}},
	} {
		if got := a.Classify(tc.ua); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.ua, got, tc.want)
		}
		if got := a.Classify(tc.ua); got != tc.want { // from the cache
			t.Errorf("%q again: %+v", tc.ua, got)
		}
	}
	// A very long user agent is cut, not refused.
	if got := a.Classify("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 " + strings.Repeat("x", 10000)); got.Browser != "Chrome" {
		t.Errorf("a long user agent: %+v", got)
	}
}

func BenchmarkAgentsCached(b *testing.B) {
	a, _ := NewAgents(0)
	uas := []string{"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"}
	for _, ua := range uas {
		a.Classify(ua)
	}
	b.ResetTimer()
	for i := range b.N {
		a.Classify(uas[i%2])
	}
}

func BenchmarkAgentsMiss(b *testing.B) {
	a, _ := NewAgents(0)
	base := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 n"
	b.ResetTimer()
	for i := range b.N {
		a.Classify(base + strings.Repeat("x", i%5000))
	}
}
