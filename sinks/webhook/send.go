package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/sinks/webhook/sign"
	"github.com/bouncer-mail/bouncer/subscription"
	"golang.org/x/oauth2"
)

var errAttempt = errors.New("webhook attempt failed")

// UserAgent is sent with every request.
const UserAgent = "bouncer-webhooks/1"

type result struct {
	class  string
	status int
	took   time.Duration
	// response is what the account may see of the failure (see
	// Delivery.Response): never the receiver's body or an error text.
	response   string
	retryAfter time.Duration
}

// StatusResponse is Delivery.Response for an HTTP answer: the status and
// Go's name for it, never the receiver's own reason phrase or body.
func StatusResponse(code int) string {
	if text := http.StatusText(code); text != "" {
		return "HTTP " + strconv.Itoa(code) + " " + text
	}
	return "HTTP " + strconv.Itoa(code)
}

// attempt POSTs a batch once, signed, within AttemptTimeout. For an
// endpoint that uses OAuth it sends the cached access token (fetching one
// first when needed); when the receiver answers 401 to it, the token is
// fetched again and the batch sent once more in the same attempt.
func (d *Dispatcher) attempt(ctx context.Context, ep *subscription.Webhook, b *Batch) result {
	body := b.Body()
	start := d.now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		d.log.Warn("webhook: endpoint URL does not make a request", "endpoint", ep.ID, "err", err)
		return result{class: ResultConnection, response: "bad endpoint URL"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	if err := sign.SetHeaders(req.Header, ep.Secrets, ep.SignedKey, b.WebhookID, start, body, start); err != nil {
		d.log.Warn("webhook: signing failed", "endpoint", ep.ID, "err", err)
		return result{class: ResultConnection, response: "signing failed"}
	}
	var tok *oauth2.Token
	if ep.OAuth != nil {
		if tok, err = d.tokens.token(ep); err != nil {
			return d.tokenFailed(ep, err, start)
		}
		tok.SetAuthHeader(req)
	}
	resp, err := d.cfg.Client.Do(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && tok != nil {
		drain(resp)
		if tok, err = d.tokens.refresh(ep, tok); err != nil {
			return d.tokenFailed(ep, err, start)
		}
		req = req.Clone(actx)
		req.Body = io.NopCloser(bytes.NewReader(body))
		tok.SetAuthHeader(req)
		resp, err = d.cfg.Client.Do(req)
	}
	if err != nil {
		// The account sees the class only: error texts name internal
		// addresses, ports and the resolver (a port scanner, otherwise).
		fail := safedial.Classify(err)
		if actx.Err() != nil {
			fail = safedial.FailTimeout
		}
		d.log.Debug("webhook attempt failed", "endpoint", ep.ID, "class", fail, "err", err)
		r := result{class: ResultConnection, took: d.now().Sub(start), response: fail.Message()}
		if fail == safedial.FailTimeout {
			r.class = ResultTimeout
		}
		return r
	}
	drain(resp)
	r := result{status: resp.StatusCode, took: d.now().Sub(start), response: StatusResponse(resp.StatusCode)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		r.class = ResultOK
	case resp.StatusCode == http.StatusGone:
		r.class = ResultGone
	default:
		r.class = ResultHTTPError
		r.retryAfter = retryAfter(resp.Header.Get("Retry-After"), d.now())
	}
	return r
}

// drain reads a response's body only to reuse the connection: what an
// internal service answers must never reach the account.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// tokenFailed is the result of an attempt that got no access token: the
// batch was not sent; it is retried like a failed delivery.
func (d *Dispatcher) tokenFailed(ep *subscription.Webhook, err error, start time.Time) result {
	d.log.Debug("webhook: OAuth token request failed", "endpoint", ep.ID, "err", errors.Unwrap(err))
	var te *TokenError
	response := "OAuth token request failed"
	if errors.As(err, &te) {
		response = te.Error()
	}
	return result{class: ResultOAuth, took: d.now().Sub(start), response: response}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// Tester sends test deliveries (the API's POST
// /v3/user/webhooks/event/test) the way delivery sends batches: through
// the SSRF guard, signed with the subscription's secrets and key.
type Tester struct {
	// Guard checks and dials the receiver.
	Guard safedial.Guard
	// Timeout bounds the whole attempt, connecting included; default 10s.
	Timeout time.Duration
	// Clock runs the timeout; default the real clock (tests pass a
	// clockwork.FakeClock to time out without waiting).
	Clock clockwork.Clock
}

// SendTest POSTs body once to url, signed with w's secrets and SendGrid
// key (none for a zero w) under a fresh webhook-id, with a bearer token
// when w uses OAuth (fetched for the test, through the guard). It returns
// the receiver's status, or, when there was no answer, the failure's class
// (never its text: addresses, ports and resolver replies stay private).
// err is set for a URL no request can be made of, and is a *TokenError
// when the token request failed.
func (t Tester) SendTest(ctx context.Context, w *subscription.Webhook, url string, body []byte, now time.Time) (status int, fail safedial.Failure, err error) {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	clock := t.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	ctx, cancel := clockwork.WithTimeout(ctx, clock, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", "bouncer-webhook-test")
	if err := sign.SetHeaders(req.Header, w.Secrets, w.SignedKey, "msg_test_"+NewWebhookID()[4:], now, body, now); err != nil {
		return 0, "", err
	}
	client := t.Guard.Client(timeout)
	if w.OAuth != nil {
		tok, err := FetchToken(ctx, client, w.OAuth)
		if err != nil {
			return 0, "", err
		}
		tok.SetAuthHeader(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		fail = safedial.Classify(err)
		select {
		case <-ctx.Done(): // not ctx.Err(): a fake clock's context blocks in Err until done
			fail = safedial.FailTimeout
		default:
		}
		return 0, fail, nil
	}
	// Drained for the connection's sake, never shown.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, "", nil
}
