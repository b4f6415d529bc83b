package api

// Webhook subscriptions: SendGrid's /v3/user/webhooks/event/... routes and
// bouncer's Standard Webhooks additions under /bouncer/v1/webhooks.

// WebhookStore keeps an account's webhook subscriptions.
type WebhookStore interface{}

func (s *server) webhookRoutes() []route { return nil }
