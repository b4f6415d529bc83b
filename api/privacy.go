package api

// Privacy erasure of one address and list import and export over HTTP.

// PrivacyStore erases addresses and imports and exports lists.
type PrivacyStore interface{}

func (s *server) privacyRoutes() []route { return nil }
