// Package prometheus holds bouncer's Prometheus rules (recording.yml,
// alerts.yml), their promtool unit tests (alerts_test.yml) and an example
// scrape configuration (prometheus.yml), embedded so tests elsewhere can
// evaluate every expression against a real Prometheus.
//
// The package's own tests run promtool over the files and check that every
// alert has a summary, a description, a runbook section in
// docs/operations.md and a unit test that makes it fire.
package prometheus

import (
	"embed"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Files are the rule files, the unit tests and the example configuration.
//
//go:embed recording.yml alerts.yml alerts_test.yml prometheus.yml
var Files embed.FS

// RuleFiles are the files Prometheus loads, in order.
var RuleFiles = []string{"recording.yml", "alerts.yml"}

// Rule is one recording or alerting rule.
type Rule struct {
	// File and Group say where it is.
	File, Group string
	// Record or Alert is its name (one of them is set).
	Record, Alert string
	Expr          string
	For           string
	Labels        map[string]string
	Annotations   map[string]string
}

// Name is the rule's record or alert name.
func (r Rule) Name() string {
	if r.Alert != "" {
		return r.Alert
	}
	return r.Record
}

// Rules reads every rule of RuleFiles.
func Rules() ([]Rule, error) {
	var out []Rule
	for _, name := range RuleFiles {
		b, err := Files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var f struct {
			Groups []struct {
				Name  string `yaml:"name"`
				Rules []struct {
					Record      string            `yaml:"record"`
					Alert       string            `yaml:"alert"`
					Expr        string            `yaml:"expr"`
					For         string            `yaml:"for"`
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				out = append(out, Rule{File: name, Group: g.Name, Record: r.Record, Alert: r.Alert,
					Expr: r.Expr, For: r.For, Labels: r.Labels, Annotations: r.Annotations})
			}
		}
	}
	return out, nil
}
