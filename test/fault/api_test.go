//go:build fault

package fault

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAPIWhileClickHouseIsDown: bouncer api with ClickHouse stopped (issue
// 16, items 10 and 11). A key revoked just before the outage stops working
// once the keys in memory are older than the revocation delay (5 s): the
// batch check, which answers from memory, then gets 503 with Retry-After
// instead of a stale yes, as does every route and the dashboard login;
// nothing answers 500. Once ClickHouse is back, the revoked key is 401 and
// the other key works again.
func TestAPIWhileClickHouseIsDown(t *testing.T) {
	inst := services(t, "fault-api")
	r := newRun(t, inst)
	env := append(r.env(), "BOUNCER_CHANGELOG_TOPIC="+r.topic+".suppressions", "BOUNCER_API_RATE_LIMIT=10000")
	bin := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bouncer %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	bin("migrate")
	keyPattern := regexp.MustCompile(`(?m)^SG\.([^.\s]+)\.\S+$`)
	revoked := keyPattern.FindStringSubmatch(bin("keys", "create", "--account", "acme", "--name", "revoked"))
	valid := keyPattern.FindString(bin("keys", "create", "--account", "acme", "--name", "valid"))
	if revoked == nil || valid == "" {
		t.Fatal("keys create printed no key")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	apiLog, _ := os.Create(filepath.Join(r.logs, "api.log"))
	api := exec.Command(binary, "api")
	api.Env = append(env, "BOUNCER_API_ADDR="+addr)
	api.Stdout, api.Stderr = apiLog, apiLog
	if err := api.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { api.Process.Kill(); api.Wait() })

	call := func(method, path, key, body string) (int, http.Header, string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	check := func(key string) (int, http.Header, string) {
		return call("POST", "/bouncer/v1/suppressions/check", key, `{"emails":["a@x.org"]}`)
	}
	waitUntil(t, 2*time.Minute, "the API answers the batch check", func() bool {
		code, _, _ := check(revoked[0])
		return code == 200
	})

	bin("keys", "revoke", revoked[1])
	if out, err := script(t, "stop-clickhouse", "--name", inst.name, "--kill"); err != nil {
		t.Fatalf("stop clickhouse: %v\n%s", err, out)
	}
	stopped := time.Now()
	defer func() {
		if t.Failed() {
			t.Logf("api log in %s", r.logs)
		}
	}()
	// Until the keys are older than the delay the cached answer stands;
	// then 503, never a stale yes for long, never a 500.
	var code int
	var h http.Header
	var body string
	waitUntil(t, 60*time.Second, "the revoked key refused while ClickHouse is down", func() bool {
		code, h, body = check(revoked[0])
		if code >= 500 && code != 503 {
			t.Fatalf("batch check in the outage: %d %s", code, body)
		}
		return code != 200
	})
	t.Logf("revoked key accepted for %.1fs after ClickHouse stopped (revocation delay 5s), then %d", time.Since(stopped).Seconds(), code)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, `"errors"`) {
		t.Fatalf("revoked key in the outage: %d Retry-After %q %s, want 503 with Retry-After in SendGrid's shape", code, h.Get("Retry-After"), body)
	}
	for _, rq := range []struct{ method, path, key, body string }{
		{"POST", "/bouncer/v1/suppressions/check", valid, `{"emails":["a@x.org"]}`},
		{"GET", "/v3/suppression/bounces", valid, ""},
		{"DELETE", "/v3/suppression/bounces/a@x.org", valid, ""},
		{"GET", "/v3/stats?start_date=2026-01-01", valid, ""},
		{"GET", "/v3/messages?query=msg_id%3D%22a%22", valid, ""},
		{"GET", "/v3/user/webhooks/event/settings/all", valid, ""},
		{"POST", "/ui/session", "", `{"api_key":"` + valid + `"}`},
	} {
		code, h, body := call(rq.method, rq.path, rq.key, rq.body)
		if code != 503 || h.Get("Retry-After") == "" {
			t.Errorf("%s %s with ClickHouse down: %d Retry-After %q %.200s, want 503 with Retry-After", rq.method, rq.path, code, h.Get("Retry-After"), body)
		}
	}

	if out, err := script(t, "start-clickhouse", "--name", inst.name); err != nil {
		t.Fatalf("start clickhouse: %v\n%s", err, out)
	}
	waitUntil(t, 60*time.Second, "the valid key works again", func() bool {
		code, _, _ := call("GET", "/v3/suppression/bounces", valid, "")
		return code == 200
	})
	if code, _, body := check(revoked[0]); code != 401 {
		t.Errorf("revoked key after ClickHouse is back: %d %s, want 401", code, body)
	}
}
