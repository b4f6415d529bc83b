package api

// Bounce forwarding settings (SendGrid's /v3/mail_settings/forward_bounce).

// ForwardingStore keeps an account's bounce forwarding settings.
type ForwardingStore interface{}

func (s *server) forwardingRoutes() []route { return nil }
