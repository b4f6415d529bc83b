package api

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
)

// The API's own OpenAPI 3.1 document is assembled from the files of
// openapi/: core.json holds the document (info, security, shared components
// and the suppression, stats and activity paths) and every other file is a
// fragment, {"paths": {...}, "components": {"schemas": {...}}}, owned by the
// area that adds those routes. A path operation or schema defined twice is a
// build mistake and panics at start (a test runs it). A test checks that the
// result lists exactly the routes of routes.go.
//
//go:embed openapi/*.json
var openAPIFiles embed.FS

// openAPI is the assembled document served at /v3/openapi.json.
var openAPI = mustAssembleOpenAPI(openAPIFiles)

func mustAssembleOpenAPI(fsys fs.FS) []byte {
	doc, err := assembleOpenAPI(fsys)
	if err != nil {
		panic(err)
	}
	return doc
}

func assembleOpenAPI(fsys fs.FS) ([]byte, error) {
	var doc map[string]any
	if err := readJSON(fsys, "openapi/core.json", &doc); err != nil {
		return nil, err
	}
	paths := objectAt(doc, "paths")
	schemas := objectAt(objectAt(doc, "components"), "schemas")
	names, err := fs.Glob(fsys, "openapi/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		if path.Base(name) == "core.json" {
			continue
		}
		var frag struct {
			Paths      map[string]map[string]any `json:"paths"`
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := readJSON(fsys, name, &frag); err != nil {
			return nil, err
		}
		for p, ops := range frag.Paths {
			item, _ := paths[p].(map[string]any)
			if item == nil {
				item = map[string]any{}
				paths[p] = item
			}
			for method, op := range ops {
				if _, dup := item[method]; dup {
					return nil, fmt.Errorf("openapi: %s: %s %s is already defined", name, method, p)
				}
				item[method] = op
			}
		}
		for s, schema := range frag.Components.Schemas {
			if _, dup := schemas[s]; dup {
				return nil, fmt.Errorf("openapi: %s: schema %s is already defined", name, s)
			}
			schemas[s] = schema
		}
	}
	addUnavailable(paths)
	return json.MarshalIndent(doc, "", "  ")
}

// addUnavailable declares 503 (components/responses/Unavailable) on every
// operation that needs a key (those that declare 401): any of them answers
// it while a store is unreachable or the keys cannot be checked, so the
// fragments need not repeat it. A fragment's own 503 is kept.
func addUnavailable(paths map[string]any) {
	for _, item := range paths {
		ops, _ := item.(map[string]any)
		for _, op := range ops {
			o, _ := op.(map[string]any) // or a path item's parameters
			responses, _ := o["responses"].(map[string]any)
			if responses["401"] == nil || responses["503"] != nil {
				continue
			}
			responses["503"] = map[string]any{"$ref": "#/components/responses/Unavailable"}
		}
	}
}

func readJSON(fsys fs.FS, name string, v any) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("openapi: %s: %w", name, err)
	}
	return nil
}

// objectAt returns m[key] as an object, creating it when missing.
func objectAt(m map[string]any, key string) map[string]any {
	o, _ := m[key].(map[string]any)
	if o == nil {
		o = map[string]any{}
		m[key] = o
	}
	return o
}

func (s *server) handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
}
