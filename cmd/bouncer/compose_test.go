package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// These tests keep docker-compose.yml and the Dockerfile honest without a
// Docker engine: every environment variable the bouncer containers are given
// must be one the binary reads, so a typo or a renamed flag cannot be ignored
// silently in production.

const (
	composePath    = "../../docker-compose.yml"
	dockerfilePath = "../../Dockerfile"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string    `yaml:"image"`
	Build       yaml.Node `yaml:"build"`
	Command     yaml.Node `yaml:"command"`
	Environment yaml.Node `yaml:"environment"`
	EnvFile     yaml.Node `yaml:"env_file"`
	Ports       yaml.Node `yaml:"ports"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	return c
}

var helpEnvRE = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)

// commandEnv builds the flags of one command (through `bouncer CMD --help`)
// and returns the environment variables that command reads.
func commandEnv(t *testing.T, name string) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	noEnv := func(string) string { return "" }
	if err := run(context.Background(), []string{"bouncer", name, "--help"}, noEnv, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("bouncer %s --help: %v\n%s", name, err, stderr.String())
	}
	out := map[string]bool{}
	for _, m := range helpEnvRE.FindAllStringSubmatch(stdout.String(), -1) {
		out[m[1]] = true
	}
	return out
}

// knownEnvAll builds every registered command's flags, then returns KnownEnv().
func knownEnvAll(t *testing.T) map[string]bool {
	t.Helper()
	for name := range commands {
		commandEnv(t, name)
	}
	known := map[string]bool{}
	for _, n := range KnownEnv() {
		known[n] = true
	}
	if !known["KAFKA_BROKERS"] || !known["CLICKHOUSE_ADDR"] {
		t.Fatalf("KnownEnv() after building every command's flags lacks KAFKA_BROKERS or CLICKHOUSE_ADDR: %v", KnownEnv())
	}
	return known
}

// serviceEnv returns the variables a service sets, in map form
// (NAME: value) or list form (NAME=value, or a bare NAME passed through).
func serviceEnv(t *testing.T, svc string, n yaml.Node) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch n.Kind {
	case 0:
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			env[n.Content[i].Value] = n.Content[i+1].Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, value, _ := strings.Cut(item.Value, "=")
			env[name] = value
		}
	default:
		t.Fatalf("service %s: environment is neither a map nor a list (line %d)", svc, n.Line)
	}
	return env
}

func scalarList(n yaml.Node) []string {
	switch n.Kind {
	case yaml.ScalarNode:
		return strings.Fields(n.Value)
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			out = append(out, c.Value)
		}
		return out
	}
	return nil
}

// builtFromDockerfile reports whether a service's build is the repository's
// Dockerfile: `build: .` or `build: {context: ., dockerfile: Dockerfile}`.
func builtFromDockerfile(n yaml.Node) bool {
	context, dockerfile := "", ""
	switch n.Kind {
	case yaml.ScalarNode:
		context = n.Value
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			switch n.Content[i].Value {
			case "context":
				context = n.Content[i+1].Value
			case "dockerfile":
				dockerfile = n.Content[i+1].Value
			}
		}
	default:
		return false
	}
	return (context == "." || context == "./") && (dockerfile == "" || dockerfile == "Dockerfile" || dockerfile == "./Dockerfile")
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"kafka", "clickhouse", "worker"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("%s: no service %q", composePath, name)
		}
	}
	w, ok := c.Services["worker"]
	if !ok {
		return
	}
	if !builtFromDockerfile(w.Build) {
		t.Errorf("service worker: want build from the repository's Dockerfile (build: {context: ., dockerfile: Dockerfile})")
	}
	if got := scalarList(w.Command); !slices.Equal(got, []string{"worker"}) {
		t.Errorf("service worker: command %q, want [\"worker\"]", got)
	}
	for _, img := range []struct{ svc, prefix string }{{"kafka", "apache/kafka:4."}, {"clickhouse", "clickhouse/clickhouse-server:"}} {
		s := c.Services[img.svc]
		if !strings.HasPrefix(s.Image, img.prefix) || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s: image %q, want a pinned %s... tag", img.svc, s.Image, img.prefix)
		}
	}
}

// TestComposeEnvNamesAreRead: every variable a bouncer container is given is
// read by the command it runs; anything else is a typo or a stale name that
// bouncer would ignore without a word.
func TestComposeEnvNamesAreRead(t *testing.T) {
	c := loadCompose(t)
	known := knownEnvAll(t)
	checked := 0
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		svc := c.Services[name]
		if svc.Build.Kind == 0 {
			continue // not a bouncer image
		}
		checked++
		if svc.EnvFile.Kind != 0 {
			t.Errorf("service %s: env_file cannot be checked by this test; set the variables under environment", name)
		}
		cmd := "worker" // the Dockerfile's CMD
		if args := scalarList(svc.Command); len(args) > 0 {
			cmd = args[0]
		}
		if _, ok := commands[cmd]; !ok {
			t.Errorf("service %s: command %q is not a bouncer command", name, cmd)
			continue
		}
		reads := commandEnv(t, cmd)
		for env := range serviceEnv(t, name, svc.Environment) {
			switch {
			case !known[env]:
				t.Errorf("service %s sets %s, which bouncer does not read (KnownEnv: %v)", name, env, KnownEnv())
			case !reads[env]:
				t.Errorf("service %s sets %s, which `bouncer %s` does not read", name, env, cmd)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no service is built from the Dockerfile")
	}
}

func TestComposeWorkerEnv(t *testing.T) {
	c := loadCompose(t)
	w, ok := c.Services["worker"]
	if !ok {
		t.Fatal("no worker service")
	}
	env := serviceEnv(t, "worker", w.Environment)
	for _, name := range []string{"KAFKA_BROKERS", "CLICKHOUSE_ADDR", "BOUNCER_OPS_ADDR"} {
		if env[name] == "" {
			t.Errorf("service worker: %s is not set", name)
		}
	}
	// Addresses name services of this file (catches kafak:9092).
	for _, name := range []string{"KAFKA_BROKERS", "CLICKHOUSE_ADDR"} {
		if strings.Contains(env[name], "${") {
			continue
		}
		for _, addr := range splitList(env[name]) {
			host, _, _ := strings.Cut(addr, ":")
			if _, ok := c.Services[host]; !ok {
				t.Errorf("service worker: %s=%s: %q is not a service in %s", name, env[name], host, composePath)
			}
		}
	}
	if ops := env["BOUNCER_OPS_ADDR"]; strings.HasPrefix(ops, "127.") || strings.HasPrefix(ops, "localhost") {
		t.Errorf("service worker: BOUNCER_OPS_ADDR=%s is unreachable from outside the container; use 0.0.0.0:PORT", ops)
	}
}

// TestComposePortsLoopback: published ports bind 127.0.0.1 unless someone
// changes that on purpose (and this test with it).
func TestComposePortsLoopback(t *testing.T) {
	c := loadCompose(t)
	for name, svc := range c.Services {
		for _, p := range svc.Ports.Content {
			switch p.Kind {
			case yaml.ScalarNode:
				if !strings.HasPrefix(p.Value, "127.0.0.1:") {
					t.Errorf("service %s: port %q is not bound to 127.0.0.1", name, p.Value)
				}
			case yaml.MappingNode:
				hostIP := ""
				for i := 0; i+1 < len(p.Content); i += 2 {
					if p.Content[i].Value == "host_ip" {
						hostIP = p.Content[i+1].Value
					}
				}
				if hostIP != "127.0.0.1" {
					t.Errorf("service %s: port at line %d has host_ip %q, want 127.0.0.1", name, p.Line, hostIP)
				}
			}
		}
	}
}

// dockerfileInstructions returns the Dockerfile's instructions with
// continuation lines joined and comments dropped.
func dockerfileInstructions(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	cur := ""
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		out = append(out, strings.TrimSpace(cur+trimmed))
		cur = ""
	}
	return out
}

func TestComposeDockerfile(t *testing.T) {
	known := knownEnvAll(t)
	builds, entry := false, false
	for _, ins := range dockerfileInstructions(t) {
		fields := strings.Fields(ins)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "RUN":
			if strings.Contains(ins, "go build") && slices.Contains(fields, "./cmd/bouncer") {
				builds = true
				if !strings.Contains(ins, "CGO_ENABLED=0") {
					t.Errorf("Dockerfile: the build must set CGO_ENABLED=0 (the final image has no libc): %s", ins)
				}
			}
		case "ENTRYPOINT":
			entry = strings.Contains(ins, `["/bouncer"]`)
		case "ENV":
			for _, kv := range fields[1:] {
				name, _, ok := strings.Cut(kv, "=")
				if ok && !known[name] {
					t.Errorf("Dockerfile: ENV %s, which bouncer does not read", name)
				}
			}
		}
	}
	if !builds {
		t.Error("Dockerfile: no RUN ... go build ... ./cmd/bouncer")
	}
	if !entry {
		t.Error(`Dockerfile: want ENTRYPOINT ["/bouncer"]`)
	}
}
