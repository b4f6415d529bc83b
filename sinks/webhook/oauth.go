package webhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TokenError is a token request that failed. Its message is what the
// account may see: the token endpoint's HTTP status, an RFC 6749 error
// code (only the registered ones) or a failure class, never the
// endpoint's body or an error text (the token URL may point at an
// allowed internal service, like a webhook URL).
type TokenError struct {
	// Status is the token endpoint's HTTP status; 0 when it did not answer.
	Status int
	// Code is the RFC 6749 error code the endpoint answered, if it is one
	// of the registered codes.
	Code string
	// Fail is the failure class when the endpoint did not answer.
	Fail safedial.Failure
	err  error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("OAuth token request failed: ")
	switch {
	case e.Fail != "":
		b.WriteString(e.Fail.Message())
	case e.Status != 0:
		b.WriteString("the token endpoint answered " + StatusResponse(e.Status))
		if e.Code != "" {
			b.WriteString(" (" + e.Code + ")")
		}
	default:
		b.WriteString("the token endpoint's answer holds no access token")
	}
	if e.Credentials() {
		b.WriteString(": check oauth_client_id and oauth_client_secret")
	}
	return b.String()
}

func (e *TokenError) Unwrap() error { return e.err }

// Credentials reports whether the token endpoint refused the client's
// credentials (invalid_client, unauthorized_client, or a plain 401).
func (e *TokenError) Credentials() bool {
	return e.Code == "invalid_client" || e.Code == "unauthorized_client" || e.Code == "" && e.Status == http.StatusUnauthorized
}

// rfc6749Codes are the error codes of a token response (RFC 6749 section
// 5.2): fixed words, safe to show.
var rfc6749Codes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "invalid_scope": true,
}

func tokenError(err error) *TokenError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		te := &TokenError{Status: re.Response.StatusCode, err: err}
		if rfc6749Codes[re.ErrorCode] {
			te.Code = re.ErrorCode
		}
		return te
	}
	if errors.As(err, &re) {
		return &TokenError{err: err}
	}
	// A 2xx without a readable access_token comes back as a plain error
	// from golang.org/x/oauth2; transport failures carry their dial errors.
	if msg := err.Error(); strings.Contains(msg, "server response missing access_token") || strings.Contains(msg, "oauth2: cannot parse") {
		return &TokenError{err: err}
	}
	return &TokenError{Fail: safedial.Classify(err), err: err}
}

// clientCredentials is the grant of o, its token requests sent by client.
func clientCredentials(o *subscription.OAuth) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, TokenURL: o.TokenURL, Scopes: o.Scopes}
}

// FetchToken gets one access token for o with client (the SSRF guard's):
// no cache, for test deliveries.
func FetchToken(ctx context.Context, client *http.Client, o *subscription.OAuth) (*oauth2.Token, error) {
	tok, err := clientCredentials(o).Token(context.WithValue(ctx, oauth2.HTTPClient, client))
	if err != nil {
		return nil, tokenError(err)
	}
	return tok, nil
}

// tokens caches one access token per endpoint, fetched with the
// client-credentials grant through the delivery client (so token URLs pass
// the same SSRF guard as webhook URLs) until TokenEarly before it expires
// (Config.TokenEarly, so that a token that would expire while a batch is on
// its way is not used; a token without expires_in is kept until a 401). Safe for concurrent
// use; concurrent attempts of one endpoint share one token request.
type tokens struct {
	client *http.Client
	early  time.Duration

	mu sync.Mutex
	m  map[string]*tokenEntry // by endpoint id
}

type tokenEntry struct {
	key string // the credentials it was made for
	src oauth2.TokenSource
}

func newTokens(client *http.Client, early time.Duration) *tokens {
	return &tokens{client: client, early: early, m: map[string]*tokenEntry{}}
}

// credentialsKey changes when anything the token depends on changes: new
// credentials get a new token at once.
func credentialsKey(o *subscription.OAuth) string {
	sum := sha256.Sum256([]byte(o.ClientSecret))
	return o.ClientID + "\x00" + o.TokenURL + "\x00" + string(sum[:]) + "\x00" + strings.Join(o.Scopes, " ")
}

// fetcher gets a new token on every call; the ReuseTokenSource around it
// caches.
type fetcher struct {
	cfg    *clientcredentials.Config
	client *http.Client
}

func (f fetcher) Token() (*oauth2.Token, error) {
	// The client's own timeout bounds the request.
	return f.cfg.Token(context.WithValue(context.Background(), oauth2.HTTPClient, f.client))
}

func (t *tokens) entry(ep *subscription.Webhook) *tokenEntry {
	key := credentialsKey(ep.OAuth)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[ep.ID]
	if e == nil || e.key != key {
		e = &tokenEntry{key: key, src: oauth2.ReuseTokenSourceWithExpiry(nil,
			fetcher{cfg: clientCredentials(ep.OAuth), client: t.client}, t.early)}
		t.m[ep.ID] = e
	}
	return e
}

// token returns the endpoint's access token, fetching one when none is
// cached or the cached one expires within TokenEarly.
func (t *tokens) token(ep *subscription.Webhook) (*oauth2.Token, error) {
	tok, err := t.entry(ep).src.Token()
	if err != nil {
		return nil, tokenError(err)
	}
	return tok, nil
}

// refresh drops the endpoint's cached token if it is still refused (a
// receiver answered 401 to it) and returns a new one. Attempts that got a
// 401 for the same token at once share one new token.
func (t *tokens) refresh(ep *subscription.Webhook, refused *oauth2.Token) (*oauth2.Token, error) {
	key := credentialsKey(ep.OAuth)
	t.mu.Lock()
	if e := t.m[ep.ID]; e != nil && e.key == key {
		if cur, err := e.src.Token(); err != nil || cur.AccessToken == refused.AccessToken {
			delete(t.m, ep.ID)
		}
	}
	t.mu.Unlock()
	return t.token(ep)
}

// keep forgets the tokens of endpoints that are gone or use no OAuth.
func (t *tokens) keep(byID map[string]*subscription.Webhook) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.m {
		if ep := byID[id]; ep == nil || ep.OAuth == nil {
			delete(t.m, id)
		}
	}
}
