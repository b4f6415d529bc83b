package api

import (
	"net/http"
	"slices"

	"github.com/bouncer-mail/bouncer/analytics"
)

// route is one entry of the API: method, path (ServeMux pattern, which is
// also its OpenAPI path template), the scope a key needs (SendGrid's names;
// a key without scopes has all), and whether it needs a key at all.
type route struct {
	method, path, scope string
	auth                bool
	handler             http.Handler
}

// lists are the suppression lists under /v3/suppression/{list}; the global
// unsubscribes are listed at /v3/suppression/unsubscribes and changed under
// /v3/asm/suppressions/global, as in SendGrid.
var lists = []string{"bounces", "blocks", "invalid_emails", "spam_reports", "unsubscribes"}

// deletable are the lists with SendGrid's one-address and bulk DELETE.
var deletable = []string{"bounces", "blocks", "invalid_emails", "spam_reports"}

// Scopes of the group unsubscribes (SendGrid's). Every path to a group's
// unsubscribes needs them, not only the /v3/asm/groups routes: the CSV export
// and import with ?group_id and the batch check with group_id too (see
// hasScope).
const (
	scopeGroupRead   = "asm.groups.suppressions.read"
	scopeGroupCreate = "asm.groups.suppressions.create"
	scopeGroupDelete = "asm.groups.suppressions.delete"
	// scopeGlobalCreate adds global unsubscribes, on the CSV import too.
	scopeGlobalCreate = "asm.suppressions.global.create"
)

// routes is every route of the API, the one place they are listed.
func (s *server) routes() []route {
	const (
		read   = "suppression.read"
		del    = "suppression.delete"
		gRead  = "asm.suppressions.global.read"
		gAdd   = scopeGlobalCreate
		gDel   = "asm.suppressions.global.delete"
		public = false
		key    = true
	)
	rs := []route{
		{"GET", "/healthz", "", public, s.handleHealthz()},
		{"GET", "/v3/openapi.json", "", public, s.handleOpenAPI()},
		{"GET", "/openapi.json", "", public, s.handleOpenAPI()},

		{"GET", "/v3/suppression/bounces/classifications", read, key, s.gated(s.handleClassifications())},
		{"GET", "/v3/suppression/bounces/classifications/{classification}", read, key, s.gated(s.handleClassificationDomains())},

		{"POST", "/v3/asm/suppressions/global", gAdd, key, s.handleGlobalAdd()},
		{"GET", "/v3/asm/suppressions/global/{email}", gRead, key, s.handleGlobalGet()},
		{"DELETE", "/v3/asm/suppressions/global/{email}", gDel, key, s.handleGlobalDelete()},

		// Unsubscribe groups (groups.go): SendGrid's scopes.
		{"POST", "/v3/asm/groups", "asm.groups.create", key, s.handleGroupCreate()},
		{"GET", "/v3/asm/groups", "asm.groups.read", key, s.handleGroups()},
		{"GET", "/v3/asm/groups/{group_id}", "asm.groups.read", key, s.handleGroupGet()},
		{"PATCH", "/v3/asm/groups/{group_id}", "asm.groups.update", key, s.handleGroupUpdate()},
		{"DELETE", "/v3/asm/groups/{group_id}", "asm.groups.delete", key, s.handleGroupDeleteGroup()},
		{"POST", "/v3/asm/groups/{group_id}/suppressions/search", scopeGroupRead, key, s.handleGroupSearch()},
		{"GET", "/v3/asm/suppressions", scopeGroupRead, key, s.handleAsmSuppressions()},
		{"GET", "/v3/asm/suppressions/{email}", scopeGroupRead, key, s.handleAsmSuppressionGet()},

		{"GET", "/v3/asm/groups/{group_id}/suppressions", scopeGroupRead, key, s.handleGroupList()},
		{"POST", "/v3/asm/groups/{group_id}/suppressions", scopeGroupCreate, key, s.handleGroupAdd()},
		{"DELETE", "/v3/asm/groups/{group_id}/suppressions/{email}", scopeGroupDelete, key, s.handleGroupDelete()},

		// Stats (SendGrid's scopes); limit and offset where SendGrid has them.
		// gated: at most Config.MaxStatsQueries at once (limits.go).
		{"GET", "/v3/stats", "stats.global.read", key, s.gated(s.handleStats(analytics.SegmentGlobal, true))},
		{"GET", "/v3/categories/stats", "categories.stats.read", key, s.gated(s.handleStats(analytics.SegmentCategory, false))},
		{"GET", "/v3/categories", "categories.read", key, s.gated(s.handleCategories())},
		{"GET", "/v3/categories/stats/sums", "categories.stats.sums.read", key, s.gated(s.handleCategorySums())},
		{"GET", "/v3/browsers/stats", "browsers.stats.read", key, s.gated(s.handleStats(analytics.SegmentBrowser, true))},
		{"GET", "/v3/clients/stats", "clients.stats.read", key, s.gated(s.handleStats(analytics.SegmentClient, false))},
		{"GET", "/v3/clients/{client_type}/stats", "clients.stats.read", key, s.gated(s.handleStats(analytics.SegmentClient, false))},
		{"GET", "/v3/devices/stats", "devices.stats.read", key, s.gated(s.handleStats(analytics.SegmentDevice, true))},
		{"GET", "/v3/geo/stats", "geo.stats.read", key, s.gated(s.handleStats(analytics.SegmentCountry, true))},
		{"GET", "/v3/mailbox_providers/stats", "mailbox_providers.stats.read", key, s.gated(s.handleStats(analytics.SegmentProvider, true))},

		// Email activity (SendGrid's scope).
		{"GET", "/v3/messages", "email_activity.read", key, s.handleMessages()},
		{"GET", "/v3/messages/{msg_id}", "email_activity.read", key, s.handleMessage()},
		// Activity CSV downloads (downloads.go); the signed link needs no key.
		{"POST", "/v3/messages/download", "email_activity.read", key, s.handleDownloadCreate()},
		{"GET", "/v3/messages/download/{download_uuid}", "email_activity.read", key, s.handleDownloadGet()},
		{"GET", downloadFilePath, "", public, s.handleDownloadFile()},

		// bouncer's own additions live under /bouncer/v1.
		{"POST", "/bouncer/v1/suppressions/check", read, key, s.handleCheck()},
		{"GET", "/bouncer/v1/stats/domains", "stats.read", key, s.gated(s.handleStats(analytics.SegmentDomain, true))},
	}
	for _, l := range lists {
		rs = append(rs, route{"GET", "/v3/suppression/" + l, read, key, s.handleList(l)})
	}
	for _, l := range deletable {
		rs = append(rs,
			route{"GET", "/v3/suppression/" + l + "/{email}", read, key, s.handleGet(l)},
			route{"DELETE", "/v3/suppression/" + l + "/{email}", del, key, s.handleDelete(l)},
			route{"DELETE", "/v3/suppression/" + l, del, key, s.handleBulkDelete(l)},
		)
	}
	rs = append(rs, []route{
		// Erasure and CSV import/export (privacy.go).
		{"POST", "/bouncer/v1/privacy/erasures", "privacy.erasures.create", key, s.handleErase()},
		{"GET", "/bouncer/v1/privacy/erasures", "privacy.erasures.read", key, s.handleErasures()},
		{"GET", "/bouncer/v1/suppressions/{list}/export", "suppression.read", key, s.handleExport()},
		{"POST", "/bouncer/v1/suppressions/{list}/import", "suppression.create", key, s.handleImport()},

		// SendGrid's legacy v2 Web API for the bounce list (legacy.go).
		{"GET", "/api/bounces.get.json", read, key, s.handleLegacyGet()},
		{"POST", "/api/bounces.get.json", read, key, s.handleLegacyGet()},
		{"GET", "/api/bounces.count.json", read, key, s.handleLegacyCount()},
		{"POST", "/api/bounces.count.json", read, key, s.handleLegacyCount()},
		{"GET", "/api/bounces.delete.json", del, key, s.handleLegacyDelete()},
		{"POST", "/api/bounces.delete.json", del, key, s.handleLegacyDelete()},

		// Bounce forwarding (forwarding.go).
		{"GET", "/v3/mail_settings/forward_bounce", "mail_settings.forward_bounce.read", key, s.handleForwardBounceGet()},
		{"PATCH", "/v3/mail_settings/forward_bounce", "mail_settings.forward_bounce.update", key, s.handleForwardBouncePatch()},
		// Bounce purge settings (purge.go).
		{"GET", "/v3/mail_settings/bounce_purge", "mail_settings.bounce_purge.read", key, s.handleBouncePurgeGet()},
		{"PATCH", "/v3/mail_settings/bounce_purge", "mail_settings.bounce_purge.update", key, s.handleBouncePurgePatch()},

		// Webhook subscriptions (webhooks.go): SendGrid's scopes; reading the Standard

		// Webhooks secret needs the update scope.
		{"POST", "/v3/user/webhooks/event/settings", scopeWebhookCreate, key, s.webhookRoute(s.handleWebhookCreate)},
		{"GET", "/v3/user/webhooks/event/settings/all", scopeWebhookRead, key, s.webhookRoute(s.handleWebhookList)},
		{"GET", "/v3/user/webhooks/event/settings/{id}", scopeWebhookRead, key, s.webhookRoute(s.handleWebhookGet)},
		{"PATCH", "/v3/user/webhooks/event/settings/{id}", scopeWebhookUpdate, key, s.webhookRoute(s.handleWebhookUpdate)},
		{"DELETE", "/v3/user/webhooks/event/settings/{id}", scopeWebhookDelete, key, s.webhookRoute(s.handleWebhookDelete)},
		{"GET", "/v3/user/webhooks/event/settings/signed/{id}", scopeWebhookRead, key, s.webhookRoute(s.handleWebhookSignedGet)},
		{"PATCH", "/v3/user/webhooks/event/settings/signed/{id}", scopeWebhookUpdate, key, s.webhookRoute(s.handleWebhookSignedSet)},
		{"POST", "/v3/user/webhooks/event/test", scopeWebhookTest, key, s.webhookRoute(s.handleWebhookTest)},

		// Webhook security policies (webhook_policies.go): SendGrid states no
		// scopes for them; they take the event webhook settings' scopes.
		{"POST", "/v3/user/webhooks/security/policies", scopeWebhookCreate, key, s.webhookRoute(s.handlePolicyCreate)},
		{"GET", "/v3/user/webhooks/security/policies", scopeWebhookRead, key, s.webhookRoute(s.handlePolicyList)},
		{"GET", "/v3/user/webhooks/security/policies/{id}", scopeWebhookRead, key, s.webhookRoute(s.handlePolicyGet)},
		{"PATCH", "/v3/user/webhooks/security/policies/{id}", scopeWebhookUpdate, key, s.webhookRoute(s.handlePolicyUpdate)},
		{"DELETE", "/v3/user/webhooks/security/policies/{id}", scopeWebhookDelete, key, s.webhookRoute(s.handlePolicyDelete)},

		{"GET", "/bouncer/v1/webhooks/{id}/secret", scopeWebhookUpdate, key, s.webhookRoute(s.handleWebhookSecret)},
		{"POST", "/bouncer/v1/webhooks/{id}/secret/rotate", scopeWebhookUpdate, key, s.webhookRoute(s.handleWebhookRotate)},

		// Webhook delivery state and replay (webhook_ops.go).
		{"GET", "/bouncer/v1/webhooks/{id}/state", scopeWebhookRead, key, s.opsRoute(s.handleWebhookState)},
		{"GET", "/bouncer/v1/webhooks/{id}/deliveries", scopeWebhookRead, key, s.opsRoute(s.handleWebhookDeliveries)},
		{"GET", "/bouncer/v1/webhooks/{id}/failed", scopeWebhookRead, key, s.opsRoute(s.handleFailedBatches)},
		{"POST", "/bouncer/v1/webhooks/{id}/failed/{webhook_id}/replay", scopeWebhookUpdate, key, s.opsRoute(s.handleReplayOne)},
		{"POST", "/bouncer/v1/webhooks/{id}/replay", scopeWebhookUpdate, key, s.opsRoute(s.handleReplaySince)},

		// The dashboard (ui.go): its page, assets and login are public.
		{"GET", "/ui", "", public, http.RedirectHandler("/ui/", http.StatusFound)},
		{"GET", "/ui/", "", public, s.handleUIIndex()},
		{"GET", "/ui/assets/{file}", "", public, s.handleUIAsset()},
		{"POST", "/ui/session", "", public, s.handleLogin()},
		{"GET", "/ui/session", "", public, s.handleSession()},
		{"DELETE", "/ui/session", "", public, s.handleLogout()},
		{"GET", "/bouncer/v1/stats/bounce_reasons", "stats.read", key, s.gated(s.handleBounceReasons())},
		{"GET", "/bouncer/v1/stats/top_domains", "stats.read", key, s.gated(s.handleTopDomains())},
		{"GET", "/bouncer/v1/classify/unmatched", "stats.read", key, s.gated(s.handleUnmatched())},
	}...)
	return rs
}

// RouteInfo describes one route of the table, for tests and tools outside
// the package (the handlers are not exposed).
type RouteInfo struct {
	Method, Path, Scope string
	Auth                bool
}

// Routes lists every route of the API, in the table's order. It is a copy:
// changing it changes nothing.
func Routes() []RouteInfo {
	rs := (&server{}).routes()
	out := make([]RouteInfo, len(rs))
	for i, r := range rs {
		out[i] = RouteInfo{Method: r.method, Path: r.path, Scope: r.scope, Auth: r.auth}
	}
	return out
}

// Scopes are the scopes the routes need (SendGrid's names where SendGrid
// has the route), sorted: the scopes a key can be given.
func Scopes() []string {
	var out []string
	for _, r := range Routes() {
		if r.Scope != "" && !slices.Contains(out, r.Scope) {
			out = append(out, r.Scope)
		}
	}
	slices.Sort(out)
	return out
}
