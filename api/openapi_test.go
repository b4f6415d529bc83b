package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Every response the package's tests produce through do is checked against
// the assembled OpenAPI document (openAPI): the status must be declared for
// the operation the request reached, the Content-Type must be one the
// response declares, and a JSON body must match its schema. TestMain then
// checks that every route of the table got at least one validated 2xx
// response, so a route added without a test through do fails the run.

const docURL = "https://bouncer.invalid/openapi.json"

var openAPIValidator = sync.OnceValues(func() (*oaValidator, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := json.Unmarshal(openAPI, &raw); err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPI))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(docURL, inst); err != nil {
		return nil, err
	}
	return &oaValidator{raw: raw, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
})

type oaValidator struct {
	raw      map[string]any
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema
}

// pointerEscape escapes one JSON pointer token.
func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func (v *oaValidator) schema(pointer string) (*jsonschema.Schema, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas[pointer]; ok {
		return s, nil
	}
	s, err := v.compiler.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, err
	}
	v.schemas[pointer] = s
	return s, nil
}

// response finds the response object of an operation for a status, with
// the JSON pointer to it, following a $ref to #/components/responses.
func (v *oaValidator) response(path, method string, status int) (map[string]any, string, bool) {
	item, _ := v.raw["paths"].(map[string]any)[path].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		return nil, "", false
	}
	responses, _ := op["responses"].(map[string]any)
	code := strconv.Itoa(status)
	resp, ok := responses[code].(map[string]any)
	pointer := "/paths/" + pointerEscape(path) + "/" + strings.ToLower(method) + "/responses/" + code
	if !ok {
		return nil, "", false
	}
	if ref, ok := resp["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/responses/")
		resp, _ = v.raw["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
		pointer = "/components/responses/" + pointerEscape(name)
		if resp == nil {
			return nil, "", false
		}
	}
	return resp, pointer, true
}

var (
	coverageMu sync.Mutex
	// validated2xx holds "METHOD /path" of every route that answered a
	// 2xx response that matched the document.
	validated2xx = map[string]bool{}
)

// checkOpenAPI validates one response of h to req against the document.
func checkOpenAPI(t *testing.T, h http.Handler, req *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	s, ok := h.(*server)
	if !ok || req.Method == http.MethodHead {
		return
	}
	v, err := openAPIValidator()
	if err != nil {
		t.Fatalf("openapi: %v", err)
	}
	_, pattern := s.mux.Handler(req)
	method, path, _ := strings.Cut(pattern, " ")
	where := "api/openapi/*.json"
	var resp map[string]any
	var pointer string
	if pattern == "" {
		// No route: the server's own 404 or 405, always SendGrid's error
		// (v2's under /api/).
		resp, pointer, _ = v.response("/v3/suppression/bounces", "GET", 401)
		if strings.HasPrefix(req.URL.Path, legacyPrefix) {
			resp, pointer, _ = v.response("/api/bounces.get.json", "GET", 404)
		}
		method, path = req.Method, req.URL.Path
	} else {
		resp, pointer, ok = v.response(path, method, rec.Code)
		if !ok {
			t.Errorf("openapi: %s %s answered %d, which %s does not declare for this operation: add \"%d\" to its responses, or fix the handler\n(body %.300s)",
				method, path, rec.Code, where, rec.Code, rec.Body)
			return
		}
	}
	content, _ := resp["content"].(map[string]any)
	body := rec.Body.Bytes()
	if len(content) == 0 {
		// A redirect's short HTML body (http.Redirect) is a courtesy, not
		// content.
		if len(body) > 0 && (rec.Code < 300 || rec.Code > 399) {
			t.Errorf("openapi: %s %s %d: the document declares no body, the response has %d bytes: %.200s", method, path, rec.Code, len(body), body)
		}
		markCovered(pattern, rec.Code)
		return
	}
	mt, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil {
		t.Errorf("openapi: %s %s %d: Content-Type %q: %v", method, path, rec.Code, rec.Header().Get("Content-Type"), err)
		return
	}
	declared := ""
	var have []string
	for k := range content {
		have = append(have, k)
		if dmt, _, err := mime.ParseMediaType(k); err == nil && dmt == mt {
			declared = k
		}
	}
	if declared == "" {
		t.Errorf("openapi: %s %s %d: Content-Type %s, the document declares %v", method, path, rec.Code, mt, have)
		return
	}
	if mt == "application/json" {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
		if err != nil {
			t.Errorf("openapi: %s %s %d: body is not JSON: %v: %.200s", method, path, rec.Code, err, body)
			return
		}
		schemaPointer := pointer + "/content/" + pointerEscape(declared) + "/schema"
		sch, err := v.schema(schemaPointer)
		if err != nil {
			t.Errorf("openapi: %s %s %d: compile %s: %v", method, path, rec.Code, schemaPointer, err)
			return
		}
		if err := sch.Validate(inst); err != nil {
			t.Errorf("openapi: %s %s %d: the body does not match the document's schema (%s):\n%v\nbody: %.500s", method, path, rec.Code, schemaPointer, err, body)
			return
		}
	}
	markCovered(pattern, rec.Code)
}

// markCovered counts a validated 2xx, or a 3xx (a route that only
// redirects has no 2xx).
func markCovered(pattern string, code int) {
	if pattern == "" || code < 200 || code > 399 {
		return
	}
	coverageMu.Lock()
	validated2xx[pattern] = true
	coverageMu.Unlock()
}

// TestMain runs the tests, then (on a full run, not one narrowed by -run or
// -skip) fails when a route
// of the table never answered a validated 2xx response through do.
func TestMain(m *testing.M) {
	code := m.Run()
	if flag.Lookup("test.run").Value.String() != "" || flag.Lookup("test.skip").Value.String() != "" {
		os.Exit(code)
	}
	var missing []string
	for _, rt := range (&server{}).routes() {
		id := rt.method + " " + rt.path
		if !validated2xx[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fmt.Fprintf(os.Stderr, "FAIL: %d routes of the table never answered a 2xx (or 3xx) response that was validated against the OpenAPI document:\n", len(missing))
		for _, id := range missing {
			fmt.Fprintf(os.Stderr, "\t%s\n", id)
		}
		fmt.Fprintf(os.Stderr, "Add a test in package api that calls each of them with do(t, NewServer(...), ...) and gets a 2xx answer;\n"+
			"do checks the answer against api/openapi/*.json (the route's fragment must declare that status and describe the body).\n")
		os.Exit(1)
	}
	os.Exit(code)
}

// TestDashboardSessionRoutesPerTheDocument logs in, reads the session and
// logs out through doRequest, so the dashboard's session routes are
// validated against the document too.
func TestDashboardSessionRoutesPerTheDocument(t *testing.T) {
	token, k := testKey(t, "acme", false)
	h := NewServer(Config{Store: &fakeStore{}, Keys: fakeKeys{k}, RateLimit: 1000})
	req := httptest.NewRequest("POST", "/ui/session", strings.NewReader(`{"api_key":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := doRequest(t, h, req)
	if rec.Code != 201 {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	var si sessionInfo
	if err := json.Unmarshal(rec.Body.Bytes(), &si); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	withSession := func(method string) *http.Request {
		r := httptest.NewRequest(method, "/ui/session", nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		r.Header.Set(csrfHeader, si.CSRFToken)
		return r
	}
	if rec := doRequest(t, h, withSession("GET")); rec.Code != 200 {
		t.Errorf("session: %d %s", rec.Code, rec.Body)
	}
	if rec := doRequest(t, h, withSession("DELETE")); rec.Code != 204 {
		t.Errorf("logout: %d %s", rec.Code, rec.Body)
	}
}
