package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var errAttempt = errors.New("webhook attempt failed")

// UserAgent is sent with every request.
const UserAgent = "bouncer-webhooks/1"

type result struct {
	class      string
	status     int
	took       time.Duration
	response   string
	retryAfter time.Duration
}

// attempt POSTs a batch once, signed, within AttemptTimeout.
func (d *Dispatcher) attempt(ctx context.Context, ep *Endpoint, b *Batch) result {
	body := b.Body()
	start := d.now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return result{class: ResultConnection, response: truncate("bad endpoint URL: " + err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	if err := d.cfg.Sign(req.Header, ep, b.WebhookID, start, body, start); err != nil {
		return result{class: ResultConnection, response: truncate("signing failed: " + err.Error())}
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		r := result{class: ResultConnection, took: d.now().Sub(start), response: truncate(err.Error())}
		var ne net.Error
		if actx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			r.class = ResultTimeout
		}
		return r
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseLog))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	resp.Body.Close()
	r := result{status: resp.StatusCode, took: d.now().Sub(start), response: string(head)}
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
