package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// replica is one `bouncer api` of a deployment, on a fixed address so it
// can be restarted behind the same proxy.
type replica struct {
	t      *testing.T
	env    map[string]string
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func (r *replica) start() {
	r.t.Helper()
	env := map[string]string{"BOUNCER_API_ADDR": r.addr}
	for k, v := range r.env {
		env[k] = v
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	done := r.done
	go func() { done <- run(ctx, []string{"bouncer", "api"}, envFunc(env), strings.NewReader(""), logs, logs) }()
	listening := regexp.MustCompile(`msg="api listening"`)
	waitFor(r.t, "api listening", 60*time.Second, func() (bool, string) {
		if listening.MatchString(logs.String()) {
			return true, ""
		}
		select {
		case err := <-done:
			r.t.Fatalf("bouncer api stopped: %v\n%s", err, logs.String())
		default:
		}
		return false, logs.String()
	})
}

func (r *replica) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("bouncer api on %s: %v", r.addr, err)
	}
}

// roundRobin is the load balancer: each request to the next replica.
func roundRobin(t *testing.T, addrs ...string) string {
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		u := &url.URL{Scheme: "http", Host: addrs[next.Add(1)%uint64(len(addrs))]}
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
	}}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv.URL
}

// dashboardSession is a logged-in dashboard: its cookie and CSRF token.
type dashboardSession struct {
	cookie *http.Cookie
	csrf   string
}

func login(t *testing.T, base, key string) dashboardSession {
	t.Helper()
	resp, err := http.Post(base+"/ui/session", "application/json", strings.NewReader(`{"api_key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var si struct {
		CSRF string `json:"csrf_token"`
	}
	if resp.StatusCode != 201 || json.Unmarshal(body, &si) != nil {
		t.Fatalf("login at %s: %d %s", base, resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "bouncer_session" && c.HttpOnly && c.SameSite == http.SameSiteStrictMode {
			return dashboardSession{c, si.CSRF}
		}
	}
	t.Fatalf("login at %s set no HttpOnly, SameSite=Strict session cookie: %v", base, resp.Cookies())
	return dashboardSession{}
}

// do sends a request with the session's cookie (and its CSRF token when
// csrf) and returns the status.
func (s dashboardSession) do(t *testing.T, method, u string, csrf bool) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.AddCookie(s.cookie)
	if csrf {
		req.Header.Set("X-CSRF-Token", s.csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// untilEnded polls the session at each base until it is 401 there (each
// base polled until its first 401, so the failed-authentication budget is
// not spent) and returns how long that took at the slowest.
func (s dashboardSession) untilEnded(t *testing.T, what string, bases ...string) time.Duration {
	t.Helper()
	start := time.Now()
	left := map[string]bool{}
	for _, b := range bases {
		left[b] = true
	}
	waitFor(t, what, 20*time.Second, func() (bool, string) {
		for b := range left {
			switch code := s.do(t, "GET", b+"/ui/session", false); code {
			case 401:
				delete(left, b)
			case 200:
			default:
				t.Fatalf("%s: GET /ui/session at %s: %d", what, b, code)
			}
		}
		return len(left) == 0, ""
	})
	return time.Since(start)
}

// TestAPIReplicas is issue 26: two `bouncer api` of one deployment (one
// ClickHouse database) behind a round-robin reverse proxy. A dashboard
// login through one works through the other and survives a restart of
// either; logout and key revocation end it on both; a burst from one key
// is held to the configured rate within ±20% over both (each allows half:
// --replicas 2).
func TestAPIReplicas(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_OPS_ADDR": "127.0.0.1:0",
		"BOUNCER_API_CHECK": "false", "BOUNCER_API_PUBLISH_CHANGES": "false",
		"BOUNCER_API_RATE_LIMIT": "20", "BOUNCER_API_REPLICAS": "2"}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	a := &replica{t: t, env: env, addr: freeLoopback(t)}
	b := &replica{t: t, env: env, addr: freeLoopback(t)}
	a.start()
	b.start()
	t.Cleanup(func() { a.stop(); b.stop() })
	A, B := "http://"+a.addr, "http://"+b.addr
	lb := roundRobin(t, a.addr, b.addr)

	// Logged in through A: the session works on B, through the balancer,
	// and after B restarts; the CSRF token A gave holds on B.
	key := createKey(t, env, "acme")
	key3 := createKey(t, env, "globex") // for the burst (a new key is known everywhere a second later)
	s := login(t, A, key)
	for _, u := range []string{B + "/ui/session", lb + "/ui/session", lb + "/ui/session", B + "/v3/suppression/bounces"} {
		if code := s.do(t, "GET", u, false); code != 200 {
			t.Fatalf("GET %s with a session from the other process: %d, want 200", u, code)
		}
	}
	del := B + "/v3/suppression/bounces/kim%40example.com"
	if code := s.do(t, "DELETE", del, false); code != 403 {
		t.Errorf("DELETE on B without the CSRF token: %d, want 403", code)
	}
	if code := s.do(t, "DELETE", del, true); code != 204 {
		t.Errorf("DELETE on B with A's CSRF token: %d, want 204", code)
	}
	b.stop()
	b.start()
	for _, u := range []string{B + "/ui/session", lb + "/ui/session", lb + "/ui/session"} {
		if code := s.do(t, "GET", u, false); code != 200 {
			t.Errorf("GET %s after B restarted mid-session: %d, want 200 (still logged in)", u, code)
		}
	}

	// Logout through A ends the session on both.
	if code := s.do(t, "DELETE", A+"/ui/session", true); code != 204 {
		t.Fatalf("logout: %d", code)
	}
	took := s.untilEnded(t, "session ended on both after logout", A, B)
	t.Logf("logout ended the session on both processes after %v", took.Round(10*time.Millisecond))

	// Revoking the key ends its sessions on both.
	key2 := createKey(t, env, "acme")
	s2 := login(t, lb, key2)
	for _, u := range []string{A, B} {
		if code := s2.do(t, "GET", u+"/ui/session", false); code != 200 {
			t.Fatalf("second session at %s: %d", u, code)
		}
	}
	id := strings.Split(key2, ".")[1]
	revoked := time.Now()
	if err := run(context.Background(), []string{"bouncer", "keys", "revoke", "--", id}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	s2.untilEnded(t, "session ended on both after its key was revoked", A, B)
	t.Logf("revoking the key ended its session on both processes after %v (revocation delay 5s)", time.Since(revoked).Round(10*time.Millisecond))

	// A burst of one key through the balancer: about 20 (the burst) plus
	// 20 a second are answered, across both processes.
	const burstFor = 3 * time.Second
	var ok, limited, badHeaders atomic.Int64
	var lastSent atomic.Int64 // unix nanoseconds: the window the rate is measured over ends there
	hit := func() (int, http.Header) {
		lastSent.Store(max(lastSent.Load(), time.Now().UnixNano()))
		req, _ := http.NewRequest("GET", lb+"/v3/suppression/bounces?limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+key3)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		h := resp.Header
		if h.Get("X-RateLimit-Limit") != "20" {
			badHeaders.Add(1)
		}
		switch resp.StatusCode {
		case 200:
			ok.Add(1)
		case 429:
			limited.Add(1)
			if h.Get("X-RateLimit-Remaining") != "0" || h.Get("Retry-After") == "" && h.Get("X-RateLimit-Reset") == "" {
				badHeaders.Add(1)
			}
		default:
			t.Errorf("burst: %d", resp.StatusCode)
			return 0, nil
		}
		return resp.StatusCode, h
	}
	start := time.Now()
	if code, h := hit(); code != 200 || h.Get("X-RateLimit-Remaining") != "18" {
		t.Errorf("the key's first request: %d, X-RateLimit-Remaining %q; want 200, 18 (this process's 10 less one, times 2 processes)", code, h.Get("X-RateLimit-Remaining"))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < burstFor {
				if code, _ := hit(); code == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Unix(0, lastSent.Load()).Sub(start).Seconds()
	want := 20 + 20*elapsed
	got := float64(ok.Load())
	t.Logf("burst of %.2fs through the balancer: %d answered, %d refused (429); configured rate allows %.0f (%+.1f%%)",
		elapsed, ok.Load(), limited.Load(), want, (got/want-1)*100)
	if got < want*0.8 || got > want*1.2 {
		t.Errorf("%d requests answered in %.2fs over two processes, want %.0f ± 20%% (20 a second, burst 20)", ok.Load(), elapsed, want)
	}
	if limited.Load() == 0 {
		t.Error("no request was refused: the burst did not reach the limit")
	}
	if badHeaders.Load() > 0 {
		t.Errorf("%d answers with X-RateLimit-Limit other than 20 or a 429 with Remaining other than 0", badHeaders.Load())
	}
}
