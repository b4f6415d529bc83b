package clickhouse

import "strings"

// Statements of webhook subscriptions (table webhooks, 0004_webhooks.sql).
//
// The current state of a subscription is its row with the highest version
// (ORDER BY version DESC LIMIT 1 BY: the table may hold unmerged parts, so
// never FINAL); a subscription whose newest row has deleted = 1 is gone.

// webhookEventColumns are the event selection columns, in the order of
// webhookEvents.
var webhookEventColumns = []string{
	"event_processed", "event_dropped", "event_delivered", "event_deferred", "event_bounce", "event_open",
	"event_click", "event_spamreport", "event_unsubscribe", "event_group_unsubscribe", "event_group_resubscribe",
}

// webhookEvents are the event names (the "event" field of SendGrid's event
// JSON) a subscription selects, one per column of webhookEventColumns.
var webhookEvents = []string{
	"processed", "dropped", "delivered", "deferred", "bounce", "open",
	"click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe",
}

// WebhookEvents returns the event names a subscription can select, in
// the order of the table's columns.
func WebhookEvents() []string { return append([]string(nil), webhookEvents...) }

var webhookColumns = append(append([]string{
	"account_id", "id", "version", "deleted", "url", "enabled", "friendly_name"},
	webhookEventColumns...),
	"secret_sealed", "prev_secret_sealed", "prev_secret_not_after", "signed", "signing_key_sealed", "public_key",
	"disabled_at", "disabled_reason", "created", "updated",
	"oauth_client_id", "oauth_token_url", "oauth_secret_sealed", "security_policy", "bouncer_fields")

// webhookCurrentSQL selects the current subscriptions matching where (a
// condition on the raw rows, before picking the newest per id).
func webhookCurrentSQL(where string) string {
	cols := strings.Join(webhookColumns, ", ")
	return "SELECT " + cols + " FROM (SELECT " + cols + " FROM webhooks WHERE " + where +
		" ORDER BY version DESC LIMIT 1 BY account_id, id) WHERE deleted = 0 ORDER BY account_id, created, id"
}

var (
	qInsertWebhooks = register(Query{Name: "webhooks.insert", SQL: insertSQL("webhooks", webhookColumns), Insert: true})

	// One account's subscriptions, oldest first. Argument: account.
	qWebhooksOfAccount = register(Query{Name: "webhooks.of_account",
		SQL: webhookCurrentSQL("account_id = ?"), Sample: []any{"acme"}})

	// Every account's subscriptions (the delivery registry polls this).
	qWebhooksAll = register(Query{Name: "webhooks.all", SQL: webhookCurrentSQL("1 = 1")})

	// One subscription of one account. Arguments: account, id.
	qWebhookOfAccount = register(Query{Name: "webhooks.one",
		SQL: webhookCurrentSQL("account_id = ? AND id = ?"), Sample: []any{"acme", "77d4a5da-7015-11ed-a1eb-0242ac120002"}})

	// The newest version of each subscription of an account, tombstones
	// included, oldest first: what the webhook claims log replays over.
	// Argument: account.
	qWebhookHeads = register(Query{Name: "webhooks.heads_of_account",
		SQL: "SELECT id, url, version, deleted FROM (SELECT id, url, version, deleted, created FROM webhooks WHERE account_id = ? " +
			"ORDER BY version DESC LIMIT 1 BY id) ORDER BY created, id", Sample: []any{"acme"}})

	// One subscription by id alone, for delivery (ids are random UUIDs).
	// Argument: id.
	qWebhookByID = register(Query{Name: "webhooks.by_id",
		SQL: webhookCurrentSQL("id = ?"), Sample: []any{"77d4a5da-7015-11ed-a1eb-0242ac120002"}})
)

// Security policies (table webhook_security_policies,
// 0011_webhook_security_policies.sql), read like the subscriptions: the
// newest version of each, tombstones left out.
var policyColumns = []string{"account_id", "id", "version", "deleted", "name", "oauth_client_id", "oauth_token_url",
	"oauth_scopes", "oauth_secret_sealed", "signed", "signing_key_sealed", "public_key", "created", "updated"}

func policyCurrentSQL(where string) string {
	cols := strings.Join(policyColumns, ", ")
	return "SELECT " + cols + " FROM (SELECT " + cols + " FROM webhook_security_policies WHERE " + where +
		" ORDER BY version DESC LIMIT 1 BY account_id, id) WHERE deleted = 0 ORDER BY account_id, created, id"
}

var (
	qInsertPolicies = register(Query{Name: "webhook_security_policies.insert", SQL: insertSQL("webhook_security_policies", policyColumns), Insert: true})
	// One account's policies, oldest first. Argument: account.
	qPoliciesOfAccount = register(Query{Name: "webhook_security_policies.of_account",
		SQL: policyCurrentSQL("account_id = ?"), Sample: []any{"acme"}})
	// Every account's policies (the delivery registry).
	qPoliciesAll = register(Query{Name: "webhook_security_policies.all", SQL: policyCurrentSQL("1 = 1")})
)
