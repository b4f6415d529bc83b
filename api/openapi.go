package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's own OpenAPI 3.1 document; a test checks it lists
// exactly the routes of routes.go.
//
//go:embed openapi.json
var openAPI []byte

func (s *server) handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
}
