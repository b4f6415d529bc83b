package api

// The dashboard at /ui.

// DashboardStore answers the dashboard's queries that no other route
// answers; nil disables them.
type DashboardStore interface{}

func (s *server) uiRoutes() []route { return nil }
