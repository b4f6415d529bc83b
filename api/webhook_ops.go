package api

// Webhook delivery operations: endpoint state, failed batches and their
// replay, under /bouncer/v1/webhooks.

// WebhookOps reads delivery state and replays failed batches.
type WebhookOps interface{}

func (s *server) webhookOpsRoutes() []route { return nil }
