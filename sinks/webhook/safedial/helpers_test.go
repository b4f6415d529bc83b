package safedial

import "net/url"

type parsedURL struct{ scheme, host string }

func parseForTest(raw string) (parsedURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return parsedURL{}, err
	}
	return parsedURL{u.Scheme, u.Hostname()}, nil
}
