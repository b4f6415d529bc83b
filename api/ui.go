package api

// The dashboard at /ui.

func (s *server) uiRoutes() []route { return nil }
