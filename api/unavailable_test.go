package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/accounts"
	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/sinks/webhook/safedial"
	"github.com/bouncer-mail/bouncer/subscription"
	"github.com/bouncer-mail/bouncer/suppression"
)

// downStores is every store of the API at once, each call failing as a
// stopped ClickHouse does (connection refused).
type downStores struct{}

func (downStores) Suppressions(context.Context, string, suppression.Query) ([]suppression.Entry, error) {
	return nil, errRefused
}
func (downStores) CountSuppressions(context.Context, string, suppression.Query) (uint64, error) {
	return 0, errRefused
}
func (downStores) WriteSuppressions(context.Context, string, []suppression.Change) error {
	return errRefused
}
func (downStores) DeleteAllSuppressions(context.Context, string, string, int64, time.Time) error {
	return errRefused
}
func (downStores) BounceClassifications(context.Context, string, time.Time, time.Time) ([]analytics.DayCount, error) {
	return nil, errRefused
}
func (downStores) BounceClassificationDomains(context.Context, string, string, time.Time, time.Time) ([]analytics.DayCount, error) {
	return nil, errRefused
}
func (downStores) PutDownload(context.Context, analytics.Download) error { return errRefused }
func (downStores) Download(context.Context, string) (analytics.Download, bool, error) {
	return analytics.Download{}, false, errRefused
}
func (downStores) ActiveDownloads(context.Context, string, time.Time) (int, error) {
	return 0, errRefused
}
func (downStores) WriteDownloadPart(context.Context, analytics.Download, uint32, []byte) error {
	return errRefused
}
func (downStores) DownloadPart(context.Context, string, uint32) (string, error) {
	return "", errRefused
}
func (downStores) DropExpiredDownloads(context.Context, time.Time) error { return errRefused }
func (downStores) ExportActivity(context.Context, string, *analytics.ActivityFilter, time.Time, time.Time, int, func(uint64), func(*analytics.ExportEvent) error) error {
	return errRefused
}
func (downStores) Categories(context.Context, string, string) ([]string, error) {
	return nil, errRefused
}
func (downStores) Stats(context.Context, string, analytics.StatsQuery) ([]analytics.StatsRow, error) {
	return nil, errRefused
}
func (downStores) ActivityMessages(context.Context, string, *analytics.ActivityFilter, int) ([]analytics.ActivityMessage, error) {
	return nil, errRefused
}
func (downStores) ActivityEvents(context.Context, string, string) ([]analytics.ActivityEvent, error) {
	return nil, errRefused
}
func (downStores) Erase(context.Context, string, string, string) (suppression.Erasure, error) {
	return suppression.Erasure{}, errRefused
}
func (downStores) Erasures(context.Context, string, uint64, uint64) ([]suppression.Erasure, error) {
	return nil, errRefused
}
func (downStores) ExportList(context.Context, string, string, int64, func(csvlist.Row) error) error {
	return errRefused
}
func (downStores) ImportList(context.Context, string, string, int64, []csvlist.Row) error {
	return errRefused
}
func (downStores) BouncePurge(context.Context, string) (accounts.BouncePurge, error) {
	return accounts.BouncePurge{}, errRefused
}
func (downStores) SetBouncePurge(context.Context, string, accounts.BouncePurge, time.Time) error {
	return errRefused
}
func (downStores) Groups(context.Context, string) ([]suppression.Group, error) {
	return nil, errRefused
}
func (downStores) CreateGroup(context.Context, string, suppression.Group, time.Time) (suppression.Group, error) {
	return suppression.Group{}, errRefused
}
func (downStores) UpdateGroup(context.Context, string, suppression.Group, time.Time) error {
	return errRefused
}
func (downStores) DeleteGroup(context.Context, string, int64, time.Time) error { return errRefused }
func (downStores) GroupSuppressions(context.Context, string, string, uint64, uint64) ([]suppression.GroupEntry, error) {
	return nil, errRefused
}
func (downStores) GroupMembers(context.Context, string, int64, []string) ([]suppression.Entry, error) {
	return nil, errRefused
}
func (downStores) ForwardBounce(context.Context, string) (accounts.ForwardBounce, error) {
	return accounts.ForwardBounce{}, errRefused
}
func (downStores) SetForwardBounce(context.Context, string, accounts.ForwardBounce, time.Time) error {
	return errRefused
}
func (downStores) WebhooksReady() error         { return nil }
func (downStores) WebhookGuard() safedial.Guard { return safedial.Guard{} }
func (downStores) Webhooks(context.Context, string) ([]subscription.Webhook, error) {
	return nil, errRefused
}
func (downStores) Webhook(context.Context, string, string) (subscription.Webhook, bool, error) {
	return subscription.Webhook{}, false, errRefused
}
func (downStores) PutWebhook(context.Context, string, subscription.Webhook) error { return errRefused }
func (downStores) SecurityPolicies(context.Context, string) ([]subscription.Policy, error) {
	return nil, errRefused
}
func (downStores) SecurityPolicy(context.Context, string, string) (subscription.Policy, bool, error) {
	return subscription.Policy{}, false, errRefused
}
func (downStores) CreateSecurityPolicy(context.Context, string, subscription.Policy) error {
	return errRefused
}
func (downStores) PutSecurityPolicy(context.Context, string, subscription.Policy) error {
	return errRefused
}
func (downStores) DeleteSecurityPolicy(context.Context, string, subscription.Policy, time.Time) error {
	return errRefused
}
func (downStores) CreateWebhook(context.Context, string, subscription.Webhook) error {
	return errRefused
}
func (downStores) ChangeWebhookURL(context.Context, string, subscription.Webhook, string) (bool, error) {
	return false, errRefused
}
func (downStores) DeleteWebhook(context.Context, string, subscription.Webhook, time.Time) error {
	return errRefused
}
func (downStores) WebhookState(context.Context, string, string) (subscription.Webhook, subscription.DeliveryState, bool, error) {
	return subscription.Webhook{}, subscription.DeliveryState{}, false, errRefused
}
func (downStores) WebhookDeliveries(context.Context, string, string, int) ([]subscription.Delivery, error) {
	return nil, errRefused
}
func (downStores) FailedWebhookBatches(context.Context, string, string, time.Time, int) ([]subscription.FailedBatch, error) {
	return nil, errRefused
}
func (downStores) ReplayWebhookBatches(context.Context, string, string, string, time.Time) ([]subscription.Replay, error) {
	return nil, errRefused
}
func (downStores) BounceReasons(context.Context, string, time.Time, time.Time, int) ([]analytics.ReasonCount, error) {
	return nil, errRefused
}
func (downStores) TopDomains(context.Context, string, time.Time, time.Time, int) ([]analytics.DomainCounts, error) {
	return nil, errRefused
}
func (downStores) UnmatchedTexts(context.Context, enrich.UnmatchedQuery) (enrich.UnmatchedReport, error) {
	return enrich.UnmatchedReport{}, errRefused
}

// goodRequests are valid requests of routes that need more than their
// path: the query or body that gets them to their store.
var goodRequests = map[string]struct{ query, body string }{
	"GET /v3/stats":                                      {"start_date=2026-01-01", ""},
	"GET /v3/categories/stats":                           {"start_date=2026-01-01&categories=a", ""},
	"GET /v3/categories/stats/sums":                      {"start_date=2026-01-01", ""},
	"GET /v3/browsers/stats":                             {"start_date=2026-01-01", ""},
	"GET /v3/clients/stats":                              {"start_date=2026-01-01", ""},
	"GET /v3/clients/{client_type}/stats":                {"start_date=2026-01-01", ""},
	"GET /v3/devices/stats":                              {"start_date=2026-01-01", ""},
	"GET /v3/geo/stats":                                  {"start_date=2026-01-01", ""},
	"GET /v3/mailbox_providers/stats":                    {"start_date=2026-01-01", ""},
	"GET /bouncer/v1/stats/domains":                      {"start_date=2026-01-01&domains=x.org", ""},
	"GET /bouncer/v1/stats/bounce_reasons":               {"start_date=2026-01-01", ""},
	"GET /bouncer/v1/stats/top_domains":                  {"start_date=2026-01-01", ""},
	"GET /bouncer/v1/classify/unmatched":                 {"start_date=2026-01-01", ""},
	"GET /v3/messages":                                   {`query=msg_id%3D%22a%22`, ""},
	"POST /v3/asm/suppressions/global":                   {"", `{"recipient_emails":["a@x.org"]}`},
	"POST /v3/asm/groups/{group_id}/suppressions":        {"", `{"recipient_emails":["a@x.org"]}`},
	"POST /v3/asm/groups":                                {"", `{"name":"n","description":"d"}`},
	"PATCH /v3/asm/groups/{group_id}":                    {"", `{"name":"n"}`},
	"POST /v3/asm/groups/{group_id}/suppressions/search": {"", `{"recipient_emails":["a@x.org"]}`},
	"POST /bouncer/v1/privacy/erasures":                  {"", `{"email":"a@x.org"}`},
	"PATCH /v3/mail_settings/forward_bounce":             {"", `{"enabled":false}`},
	"PATCH /v3/mail_settings/bounce_purge":               {"", `{"enabled":true}`},
	"POST /v3/user/webhooks/event/settings":              {"", `{"enabled":true,"url":"https://hooks.example.com/x","delivered":true}`},
	"POST /bouncer/v1/suppressions/{list}/import":        {"", "email\na@x.org\n"},
	"POST /v3/user/webhooks/event/test":                  {"", `{"id":"00000000-0000-0000-0000-000000000000"}`},
	"POST /v3/user/webhooks/security/policies":           {"", `{"name":"p","signature":{"enabled":true}}`},
	"PATCH /v3/user/webhooks/security/policies/{id}":     {"", `{"name":"q"}`},
	"POST /bouncer/v1/suppressions/check":                {"", `{"emails":["a@x.org"]}`},
	"DELETE /v3/suppression/bounces":                     {"", `{"emails":["a@x.org"]}`},
	"DELETE /v3/suppression/blocks":                      {"", `{"emails":["a@x.org"]}`},
	"DELETE /v3/suppression/invalid_emails":              {"", `{"emails":["a@x.org"]}`},
	"DELETE /v3/suppression/spam_reports":                {"", `{"emails":["a@x.org"]}`},
}

// TestStoreOutageIsUnavailable, over the route table: with every store
// failing as a stopped ClickHouse does, no route answers 500; a route that
// reaches its store answers 503 with Retry-After in SendGrid's shape
// (issue 16, item 11: an outage answered 500 "internal error").
func TestStoreOutageIsUnavailable(t *testing.T) {
	token, k := testKey(t, "acme", false)
	d := downStores{}
	h := NewServer(Config{Store: d, Stats: d, Categories: d, Downloads: d, GeoIP: true, Activity: d, Privacy: d, Forwarding: d, Webhooks: d, WebhookOps: d,
		Dashboard: d, Groups: d, BouncePurge: d, Checker: fakeChecker{}, Keys: fakeKeys{k}, RateLimit: 1e6})
	unavailable := 0
	for _, rt := range (&server{}).routes() {
		if !rt.auth {
			continue
		}
		id := rt.method + " " + rt.path
		good := goodRequests[id]
		path := fill(rt.path)
		if good.query != "" {
			path += "?" + good.query
		}
		rec := hostileDo(t, h, rt.path, hostileReq(rt.method, path, token, good.body))
		switch {
		case rec.Code == 503:
			unavailable++
			if ra := rec.Header().Get("Retry-After"); ra != "5" {
				t.Errorf("%s: 503 with Retry-After %q, want 5", id, ra)
			}
			if msg := errorMessage(t, rec, rt.path); strings.Contains(msg, "refused") || strings.Contains(msg, "127.0.0.1") {
				t.Errorf("%s: the 503 shows the store's error: %q", id, msg)
			}
		case rec.Code >= 500:
			t.Errorf("%s with its store down: %d %.200s, want 503 with Retry-After", id, rec.Code, rec.Body)
		case id == "POST /bouncer/v1/suppressions/check":
			// Answered from memory (the Checker), not from a store.
		default:
			t.Errorf("%s with its store down: %d %.200s, want 503 with Retry-After", id, rec.Code, rec.Body)
		}
	}
	if unavailable < 50 {
		t.Errorf("only %d routes reached their store and answered 503; add their valid requests to goodRequests", unavailable)
	}
}

// TestUnavailableErrors: which store errors are 503 and which stay 500.
func TestUnavailableErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errRefused, true},
		{fmt.Errorf("query: %w", io.EOF), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("publish: %w", temporary(true)), true},
		{fmt.Errorf("publish: %w", temporary(false)), false},
		{errors.New("code: 62, message: Syntax error"), false},
		{context.Canceled, false},
	} {
		if got := unavailable(tc.err); got != tc.want {
			t.Errorf("%v: unavailable %v, want %v", tc.err, got, tc.want)
		}
	}
	// A store's own word, through Config.Unavailable.
	full := errors.New("clickhouse: acquire conn timeout")
	token, k := testKey(t, "acme", false)
	st := &erringStats{err: full}
	h := NewServer(Config{Store: &fakeStore{}, Stats: st, Keys: fakeKeys{k}, Unavailable: func(err error) bool { return errors.Is(err, full) }})
	if rec := do(t, h, "GET", "/v3/stats?start_date=2026-01-01", token, ""); rec.Code != 503 {
		t.Errorf("with Config.Unavailable: %d, want 503", rec.Code)
	}
	h = NewServer(Config{Store: &fakeStore{}, Stats: st, Keys: fakeKeys{k}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, hostileReq("GET", "/v3/stats?start_date=2026-01-01", token, ""))
	if rec.Code != 500 {
		t.Errorf("without it: %d, want 500", rec.Code)
	}
}

type temporary bool

func (t temporary) Error() string   { return "kafka: leader not available" }
func (t temporary) Temporary() bool { return bool(t) }

type erringStats struct{ err error }

func (e *erringStats) Stats(context.Context, string, analytics.StatsQuery) ([]analytics.StatsRow, error) {
	return nil, e.err
}
