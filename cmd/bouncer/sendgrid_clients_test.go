package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/geotest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
	"github.com/bouncer-mail/bouncer/suppression"
)

// sendGridLibraries finds SendGrid's Python and Node libraries where
// scripts/sendgrid-clients --install puts them (make test runs it): under
// CI a missing one fails the test, elsewhere it skips it.
func sendGridLibraries(t *testing.T) (python, nodePath string) {
	t.Helper()
	cache := os.Getenv("BOUNCER_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "bouncer")
	}
	python = filepath.Join(cache, "sendgrid-venv", "bin", "python")
	nodePath = filepath.Join(cache, "sendgrid-node", "node_modules")
	_, errPy := os.Stat(python)
	_, errNode := os.Stat(filepath.Join(nodePath, "@sendgrid", "client"))
	if errPy != nil || errNode != nil {
		msg := "SendGrid's Python or Node library is not installed: run scripts/sendgrid-clients --install"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return python, nodePath
}

// TestSendGridPythonAndNodeClients points SendGrid's official Python
// library (sendgrid on PyPI) and Node library (@sendgrid/client on npm) at a
// real `bouncer api` on loopback, backed by real ClickHouse, and runs the
// cases of test/clients/cases.json with each: the lists, one entry's get
// and delete, bulk deletes, global and group unsubscribes, groups, stats,
// activity, webhook settings and mail settings. Each library works on an
// account of its own, seeded alike. A failure names the client and the
// route.
func TestSendGridPythonAndNodeClients(t *testing.T) {
	python, nodePath := sendGridLibraries(t)
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db, "BOUNCER_API_ADDR": "127.0.0.1:0",
		"BOUNCER_GEOIP_DB":   geotest.WriteDB(t, t.TempDir()), // (the api only needs to know the workers have one)
		"BOUNCER_SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32))}
	if err := run(context.Background(), []string{"bouncer", "migrate"}, envFunc(env), strings.NewReader(""), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: []string{addr}, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clients := []struct {
		name, account string
		cmd           []string
		env           []string
	}{
		{"python", "py-client", []string{python, "test/clients/sendgrid_py.py", "test/clients/cases.json"}, nil},
		{"node", "node-client", []string{"node", "test/clients/sendgrid_node.js", "test/clients/cases.json"}, []string{"NODE_PATH=" + nodePath}},
	}
	keys := map[string]string{}
	t0 := time.Unix(1764201600, 0).UTC() // 2025-11-27 00:00
	for _, c := range clients {
		keys[c.account] = createKey(t, env, c.account)
		seedClientAccount(t, st, c.account, t0)
	}
	base := startAPI(t, env, "--check=false", "--publish-changes=false", "--webhook-claims=false", "--rate-limit", "1000", "--bounce-purge-interval", "0")

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(cctx, c.cmd[0], c.cmd[1:]...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), append(c.env, "BOUNCER_URL="+base, "BOUNCER_KEY="+keys[c.account], "BOUNCER_MSG="+c.account+"-msg")...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			sc := bufio.NewScanner(&out)
			summary := ""
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "FAIL ") {
					t.Error(line)
				}
				summary = line
			}
			if err != nil {
				t.Errorf("%s client: %v; its output ends: %s", c.name, err, summary)
			} else {
				t.Logf("%s", summary)
			}
		}()
	}
	wg.Wait()
}

// seedClientAccount gives an account what cases.json expects: four
// bounces an hour apart from t0, one block, invalid address and spam
// report, and a delivered and a bounced message (category news) on t0's
// day, opened on an iPhone in Texas and clicked in Chrome in Ontario.
func seedClientAccount(t *testing.T, st *clickhouse.Store, account string, t0 time.Time) {
	t.Helper()
	ctx := context.Background()
	var changes []suppression.Change
	for i, e := range []string{"kim@example.com", "lee@example.com", "pat@example.com", "sam@example.com"} {
		changes = append(changes, suppression.Change{AccountID: account, List: "bounces", EmailNorm: e, Email: e, At: t0.Add(time.Duration(i) * time.Hour),
			Reason: "550 5.1.1 The email account that you tried to reach does not exist.", Status: "5.1.1", Classification: "Invalid Address", Source: "event:test"})
	}
	for list, e := range map[string]string{"blocks": "blk@example.com", "invalid_emails": "inv@example.com", "spam_reports": "spam@example.com"} {
		changes = append(changes, suppression.Change{AccountID: account, List: list, EmailNorm: e, Email: e, At: t0, Reason: "test", Status: "5.0.0", Source: "event:test"})
	}
	if err := st.WriteSuppressions(ctx, changes); err != nil {
		t.Fatal(err)
	}
	msg := account + "-msg"
	ev := func(id string, event schemas.EventType, email string) schemas.Event {
		return schemas.Event{Topic: "t", Event: event, AccountID: account, SGEventID: account + id, SGMessageID: msg, Email: email, EmailNorm: email,
			Domain: "example.com", Timestamp: t0.Add(2 * time.Hour).Unix(), Categories: []string{"news"}}
	}
	delivered := ev("-e1", "delivered", "ann@example.com")
	bounced := ev("-e2", "bounce", "kim@example.com")
	bounced.Type, bounced.Reason, bounced.Status = "bounce", "550 5.1.1 user unknown", "5.1.1"
	opened := ev("-e3", "open", "ann@example.com")
	opened.UserAgent, opened.IP = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148", "203.0.113.7"
	clicked := ev("-e4", "click", "ann@example.com")
	clicked.UserAgent, clicked.IP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "198.51.100.9"
	rows := []pipeline.Row{{Event: delivered},
		{Event: bounced, Bounce: &enrich.Result{BounceType: enrich.Hard, Classification: enrich.InvalidAddress, Reason: "user_unknown"}},
		{Event: opened, Agent: enrich.UserAgent{Browser: "Mobile Safari UI/WKWebView", Client: "Apple Mail", Device: enrich.DevicePhone}, Place: enrich.Place{Country: "US", Region: "TX"}},
		{Event: clicked, Agent: enrich.UserAgent{Browser: "Chrome", Client: "Chrome", Device: enrich.DeviceWebmail}, Place: enrich.Place{Country: "CA", Region: "ON"}}}
	for i := range rows {
		rows[i].Event.Partition, rows[i].Event.Offset = 0, int64(i)
	}
	if err := st.WriteEvents(ctx, rows); err != nil {
		t.Fatal(err)
	}
}
