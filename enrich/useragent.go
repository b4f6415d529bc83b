package enrich

import (
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/ua-parser/uap-go/uaparser"
)

// Device types of SendGrid's device and client stats.
const (
	DeviceDesktop = "Desktop"
	DeviceWebmail = "Webmail"
	DevicePhone   = "Phone"
	DeviceTablet  = "Tablet"
	DeviceOther   = "Other"
)

// UserAgent is what an open's or a click's user agent says: the browser
// (uap-core's user agent family, e.g. "Chrome", "Mobile Safari"), the mail
// client ("Gmail", "Yahoo Mail", "Outlook", "Apple Mail", ... or the
// browser's family when the mail was read in a browser) and the device
// type (one of the Device constants).
type UserAgent struct {
	Browser, Client, Device string
}

// maxUserAgent is the longest user agent classified; a longer one is cut
// (the regular expressions' cost grows with it).
const maxUserAgent = 512

// Agents classifies user agents with uap-core's regular expressions
// (github.com/ua-parser/uap-go, embedded), remembering the last Size
// distinct ones (an LRU): mail opens come mostly from a few image proxies
// and apps, so nearly every event is a cache hit; a miss costs the
// regular expressions, about a millisecond. Safe for concurrent use.
type Agents struct {
	parser *uaparser.Parser
	cache  *lru.Cache[string, UserAgent]
}

// NewAgents returns a classifier that remembers size user agents (default
// 4096).
func NewAgents(size int) (*Agents, error) {
	if size <= 0 {
		size = 4096
	}
	// uap-go's own caches are per part (agent, OS, device); ours holds the
	// whole answer, so theirs are kept minimal.
	p, err := uaparser.New(uaparser.WithCacheSize(1))
	if err != nil {
		return nil, err
	}
	c, err := lru.New[string, UserAgent](size)
	if err != nil {
		return nil, err
	}
	return &Agents{parser: p, cache: c}, nil
}

// Classify returns what ua says; the zero UserAgent for an empty one.
func (a *Agents) Classify(ua string) UserAgent {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return UserAgent{}
	}
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	if v, ok := a.cache.Get(ua); ok {
		return v
	}
	v := classifyAgent(a.parser.Parse(ua))
	a.cache.Add(ua, v)
	return v
}

// classifyAgent maps uap-core's answer to a mail client and device type:
// the image proxies of webmail providers, desktop mail programs, phones and
// tablets by their OS and device, browsers on a computer (webmail), and
// the rest (Other).
func classifyAgent(c *uaparser.Client) UserAgent {
	family, os, dev := c.UserAgent.Family, c.Os.Family, c.Device
	v := UserAgent{Browser: family, Client: family, Device: DeviceOther}
	switch family {
	case "GmailImageProxy":
		v.Client, v.Device = "Gmail", DeviceWebmail
		return v
	case "YahooMailProxy":
		v.Client, v.Device = "Yahoo Mail", DeviceWebmail
		return v
	case "Outlook", "Thunderbird", "Apple Mail", "Windows Live Mail", "Lotus Notes", "Airmail", "Spark", "Postbox":
		v.Device = DeviceDesktop
		if os == "iOS" || os == "Android" {
			v.Device = mobileDevice(dev)
		}
		return v
	}
	switch os {
	case "iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS":
		v.Device = mobileDevice(dev)
		if family == "Mobile Safari UI/WKWebView" && os == "iOS" {
			v.Client = "Apple Mail" // iOS Mail shows mail in a WKWebView
		}
		return v
	case "Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora":
		if family != "Other" && !strings.Contains(strings.ToLower(family), "bot") {
			v.Device = DeviceWebmail // a browser on a computer
		}
	}
	return v
}

// mobileDevice is Tablet or Phone from uap-core's device.
func mobileDevice(d *uaparser.Device) string {
	s := strings.ToLower(d.Family + " " + d.Brand + " " + d.Model)
	for _, w := range []string{"ipad", "tablet", "kindle", "tab", "sm-t", "sm-x", "nexus 7", "nexus 9", "nexus 10"} {
		if strings.Contains(s, w) {
			return DeviceTablet
		}
	}
	return DevicePhone
}
