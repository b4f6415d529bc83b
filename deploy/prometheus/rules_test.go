package prometheus_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/bouncer-mail/bouncer/deploy/prometheus"
	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// promtool runs promtool in this folder and fails the test with its output
// when it fails.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(testenv.Program(t, "promtool"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool(t, append([]string{"check", "rules"}, prometheus.RuleFiles...)...)
}

func TestPromtoolCheckConfig(t *testing.T) {
	promtool(t, "check", "config", "prometheus.yml")
}

func TestPromtoolTestRules(t *testing.T) {
	promtool(t, "test", "rules", "alerts_test.yml")
}

// Every alert says what is wrong, links to its runbook section, and has a
// section in docs/operations.md.
func TestAlertsHaveRunbooks(t *testing.T) {
	rules, err := prometheus.Rules()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (\S+)$`).FindAllStringSubmatch(string(doc), -1) {
		sections[m[1]] = true
	}
	const base = "https://github.com/bouncer-mail/bouncer/blob/main/docs/operations.md#"
	n := 0
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		n++
		for _, a := range []string{"summary", "description"} {
			if r.Annotations[a] == "" {
				t.Errorf("alert %s has no %s", r.Alert, a)
			}
		}
		if want := base + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
			t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
		}
		if !sections[r.Alert] {
			t.Errorf("alert %s has no section (### %s) in docs/operations.md", r.Alert, r.Alert)
		}
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("alert %s: severity %q, want page or ticket", r.Alert, s)
		}
	}
	if n == 0 {
		t.Fatal("no alerts in the rule files")
	}
}

// Every alert has a unit test in which it fires (promtool only runs the
// tests that exist), and, when it waits ("for"), a time at which it does not
// fire yet.
func TestEveryAlertHasAUnitTest(t *testing.T) {
	rules, err := prometheus.Rules()
	if err != nil {
		t.Fatal(err)
	}
	b, err := prometheus.Files.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alert  string `yaml:"alertname"`
				Expect []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, c := range tc.Cases {
			if len(c.Expect) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		if !fires[r.Alert] {
			t.Errorf("alert %s: no unit test in alerts_test.yml makes it fire", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("alert %s: no unit test in alerts_test.yml checks a time when it must not fire", r.Alert)
		}
	}
}
