// Package helm tests the bouncer Helm chart (deploy/helm/bouncer) without a
// cluster: it renders the chart with the Helm SDK for every value set in
// bouncer/ci/, decodes each rendered object strictly into its Kubernetes
// (or Prometheus Operator) type, so a misspelt or misplaced field fails, and
// checks what running bouncer there depends on: probes on the ops port,
// memory requests and limits, pinned images, grace periods longer than the
// shutdown timeout, hook ordering of the migration, Secret references, and
// that every environment variable a container is given is one its bouncer
// command reads, according to the binary's own --help (the source of truth
// cmd/bouncer/compose_test.go uses for docker-compose.yml).
//
// It is a module of its own so that Helm's and Kubernetes' dependencies stay
// out of bouncer's.
package helm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "bouncer"

// workerPeakRSS is the worker's largest peak RSS measured by `make bench`
// (1M-event backlog, 4 partitions): the worker's memory limit must exceed it.
var workerPeakRSS = resource.MustParse("687Mi")

// commandEnv maps a bouncer command to the environment variables it reads.
var commandEnv map[string]map[string]bool

func TestMain(m *testing.M) {
	env, err := readCommandEnv("worker", "api", "migrate")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	commandEnv = env
	os.Exit(m.Run())
}

var helpEnvRE = regexp.MustCompile(`\(env ([A-Z][A-Z0-9_]*)\)`)

// readCommandEnv builds bouncer from the repository root and reads each
// command's variables from its --help, where every flag names its own.
func readCommandEnv(cmds ...string) (map[string]map[string]bool, error) {
	dir, err := os.MkdirTemp("", "bouncer-helm-test")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "bouncer")
	build := exec.Command("go", "build", "-o", bin, "./cmd/bouncer")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/bouncer: %v\n%s", err, out)
	}
	env := map[string]map[string]bool{}
	for _, c := range cmds {
		var out bytes.Buffer
		help := exec.Command(bin, c, "--help")
		help.Env = []string{} // defaults only, whatever this shell exports
		help.Stdout, help.Stderr = &out, &out
		if err := help.Run(); err != nil {
			return nil, fmt.Errorf("bouncer %s --help: %v\n%s", c, err, out.String())
		}
		env[c] = map[string]bool{}
		for _, m := range helpEnvRE.FindAllStringSubmatch(out.String(), -1) {
			env[c][m[1]] = true
		}
		if len(env[c]) == 0 {
			return nil, fmt.Errorf("bouncer %s --help names no (env NAME): did its format change?\n%s", c, out.String())
		}
	}
	return env, nil
}

// rendered is one value set's output, decoded.
type rendered struct {
	values      map[string]any
	deployments map[string]*appsv1.Deployment
	jobs        map[string]*batchv1.Job
	services    map[string]*corev1.Service
	secrets     map[string]*corev1.Secret
	pdbs        map[string]*policyv1.PodDisruptionBudget
	monitors    map[string]*monitoringv1.ServiceMonitor
	rules       map[string]*monitoringv1.PrometheusRule
	order       []string // kind/name in file order, for the summary
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	return c
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := loader.LoadValues(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return vals
}

// render renders the chart as `helm template bouncer deploy/helm/bouncer -f
// FILE` would, returning the manifests by template path.
func render(c *chart.Chart, vals map[string]any) (map[string]string, common.Values, error) {
	top, err := util.ToRenderValues(c, vals, common.ReleaseOptions{Name: "bouncer", Namespace: "mail", IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, nil, err
	}
	out, err := engine.Render(c, top)
	return out, top, err
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decode splits the manifests into objects and decodes each strictly
// (unknown or duplicate fields are errors) into its type.
func decode(t *testing.T, files map[string]string, vals map[string]any) *rendered {
	t.Helper()
	r := &rendered{
		values:      vals,
		deployments: map[string]*appsv1.Deployment{},
		jobs:        map[string]*batchv1.Job{},
		services:    map[string]*corev1.Service{},
		secrets:     map[string]*corev1.Secret{},
		pdbs:        map[string]*policyv1.PodDisruptionBudget{},
		monitors:    map[string]*monitoringv1.ServiceMonitor{},
		rules:       map[string]*monitoringv1.PrometheusRule{},
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if strings.HasSuffix(p, "NOTES.txt") {
			continue
		}
		for i, doc := range docSep.Split(files[p], -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", p, i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v\n%s", where, err, doc)
			}
			var obj interface{ GetName() string }
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				obj = &appsv1.Deployment{}
			case "batch/v1 Job":
				obj = &batchv1.Job{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "policy/v1 PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			case "monitoring.coreos.com/v1 ServiceMonitor":
				obj = &monitoringv1.ServiceMonitor{}
			case "monitoring.coreos.com/v1 PrometheusRule":
				obj = &monitoringv1.PrometheusRule{}
			default:
				t.Fatalf("%s: %s %s is not a kind this test decodes; add it to decode", where, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s does not decode strictly: %v\n%s", where, tm.Kind, err, doc)
			}
			name := obj.GetName()
			if name == "" {
				t.Fatalf("%s: %s without a name", where, tm.Kind)
			}
			seen := false
			switch o := obj.(type) {
			case *appsv1.Deployment:
				_, seen = r.deployments[name]
				r.deployments[name] = o
			case *batchv1.Job:
				_, seen = r.jobs[name]
				r.jobs[name] = o
			case *corev1.Service:
				_, seen = r.services[name]
				r.services[name] = o
			case *corev1.Secret:
				_, seen = r.secrets[name]
				r.secrets[name] = o
			case *policyv1.PodDisruptionBudget:
				_, seen = r.pdbs[name]
				r.pdbs[name] = o
			case *monitoringv1.ServiceMonitor:
				_, seen = r.monitors[name]
				r.monitors[name] = o
			case *monitoringv1.PrometheusRule:
				_, seen = r.rules[name]
				r.rules[name] = o
			}
			if seen {
				t.Errorf("%s: a second %s named %s", where, tm.Kind, name)
			}
			r.order = append(r.order, tm.Kind+"/"+name)
		}
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func valueSets(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want the value sets in %s/ci (defaults, cluster, existing-secret, monitoring), found %v (%v)", chartDir, files, err)
	}
	return files
}

// TestRender renders every value set and checks what each must hold.
func TestRender(t *testing.T) {
	c := loadChart(t)
	for _, file := range valueSets(t) {
		name := strings.TrimSuffix(filepath.Base(file), "-values.yaml")
		t.Run(name, func(t *testing.T) {
			vals := readValues(t, file)
			files, top, err := render(c, vals)
			if err != nil {
				t.Fatalf("render with %s: %v", file, err)
			}
			r := decode(t, files, top["Values"].(common.Values).AsMap())
			checkCommon(t, r)
			switch name {
			case "defaults":
				checkDefaults(t, r)
			case "cluster":
				checkCluster(t, r)
			case "existing-secret":
				checkExistingSecret(t, r)
			case "monitoring":
				checkMonitoring(t, r)
			default:
				t.Fatalf("value set %s has no checks of its own; add them to TestRender", name)
			}
			if testing.Verbose() && name == "defaults" {
				t.Log("helm template output for the default values:\n" + summary(r))
			}
		})
	}
}

const (
	workerName = "bouncer-worker"
	apiName    = "bouncer-api"
	jobName    = "bouncer-migrate"
	secretName = "bouncer-secrets"
)

// checkCommon holds for every value set.
func checkCommon(t *testing.T, r *rendered) {
	w, a := r.deployments[workerName], r.deployments[apiName]
	if w == nil || a == nil {
		t.Fatalf("want Deployments %s and %s, got %v", workerName, apiName, r.order)
	}
	checkPod(t, r, "Deployment "+workerName, w.Spec.Template, "worker", 9464, "BOUNCER_OPS_ADDR")
	checkPod(t, r, "Deployment "+apiName, a.Spec.Template, "api", 9465, "BOUNCER_API_OPS_ADDR")
	for _, d := range []*appsv1.Deployment{w, a} {
		sel, err := metav1.LabelSelectorAsMap(d.Spec.Selector)
		if err != nil || !subset(sel, d.Spec.Template.Labels) || len(sel) == 0 {
			t.Errorf("Deployment %s: selector %v does not select its own pods %v", d.Name, sel, d.Spec.Template.Labels)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 1 {
			t.Errorf("Deployment %s: replicas %v", d.Name, d.Spec.Replicas)
		}
	}

	// The worker's grace outlasts its shutdown timeout, the api's its
	// preStop sleep plus its shutdown timeout.
	wc := w.Spec.Template.Spec.Containers[0]
	if g, sd := grace(w), envDuration(t, wc, "BOUNCER_SHUTDOWN_TIMEOUT"); g <= sd {
		t.Errorf("Deployment %s: terminationGracePeriodSeconds %v is not longer than BOUNCER_SHUTDOWN_TIMEOUT %v", w.Name, g, sd)
	}
	ac := a.Spec.Template.Spec.Containers[0]
	sleep := time.Duration(0)
	if ac.Lifecycle != nil && ac.Lifecycle.PreStop != nil && ac.Lifecycle.PreStop.Sleep != nil {
		sleep = time.Duration(ac.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if g, sd := grace(a), envDuration(t, ac, "BOUNCER_SHUTDOWN_TIMEOUT"); g <= sd+sleep {
		t.Errorf("Deployment %s: terminationGracePeriodSeconds %v is not longer than preStop sleep %v + BOUNCER_SHUTDOWN_TIMEOUT %v", a.Name, g, sleep, sd)
	}
	if lim := wc.Resources.Limits.Memory(); lim.Cmp(workerPeakRSS) <= 0 {
		t.Errorf("Deployment %s: memory limit %v is not above the measured peak RSS %v", w.Name, lim, &workerPeakRSS)
	}
	if got, want := env(ac, "BOUNCER_API_REPLICAS"), fmt.Sprint(*a.Spec.Replicas); got != want {
		t.Errorf("Deployment %s: BOUNCER_API_REPLICAS=%q, want the replica count %s (each process allows 1/N of the rate limit)", a.Name, got, want)
	}

	// The migration runs as a hook before installs and upgrades, and the
	// workers then leave it alone.
	j := r.jobs[jobName]
	if j == nil {
		t.Fatalf("no Job %s: %v", jobName, r.order)
	}
	if got := j.Annotations["helm.sh/hook"]; got != "pre-install,pre-upgrade" {
		t.Errorf("Job %s: helm.sh/hook %q, want pre-install,pre-upgrade", j.Name, got)
	}
	if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever && j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		t.Errorf("Job %s: restartPolicy %q", j.Name, j.Spec.Template.Spec.RestartPolicy)
	}
	checkPod(t, r, "Job "+jobName, j.Spec.Template, "migrate", 0, "")
	if got := env(wc, "BOUNCER_MIGRATE"); got != "false" {
		t.Errorf("Deployment %s: BOUNCER_MIGRATE=%q, want false (the migrate Job does it)", w.Name, got)
	}
	// Hook objects the Job needs are hooks too, created before it.
	jw := hookWeight(t, j.ObjectMeta)
	for _, ref := range secretRefs(j.Spec.Template.Spec) {
		s := r.secrets[ref.Name]
		if s == nil {
			continue // existingSecret: made before the install
		}
		if s.Annotations["helm.sh/hook"] == "" || hookWeight(t, s.ObjectMeta) >= jw {
			t.Errorf("Job %s reads Secret %s, which is not a hook created before it: a first install would start the Job before the Secret exists", j.Name, s.Name)
		}
	}

	// Every object's component pods are covered by the PDBs that exist.
	for _, p := range r.pdbs {
		sel, _ := metav1.LabelSelectorAsMap(p.Spec.Selector)
		matched := 0
		for _, d := range r.deployments {
			if subset(sel, d.Spec.Template.Labels) {
				matched++
			}
		}
		if matched != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d Deployments, want 1", p.Name, matched)
		}
		if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
			t.Errorf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", p.Name)
		}
	}
	if !hasPDB(r, w) {
		t.Errorf("no PodDisruptionBudget covers Deployment %s", w.Name)
	}

	// The api's Service reaches the api pods on its http port.
	s := r.services[apiName]
	if s == nil {
		t.Fatalf("no Service %s", apiName)
	}
	if !subset(s.Spec.Selector, a.Spec.Template.Labels) || len(s.Spec.Selector) == 0 {
		t.Errorf("Service %s: selector %v does not select the api pods %v", s.Name, s.Spec.Selector, a.Spec.Template.Labels)
	}
	for _, p := range s.Spec.Ports {
		if !hasPort(ac, p.TargetPort.String()) {
			t.Errorf("Service %s: port %s targets %s, which the api container does not expose", s.Name, p.Name, p.TargetPort.String())
		}
	}
	if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.TargetPort.String() == "http" }) {
		t.Errorf("Service %s: no port targets http", s.Name)
	}

	// Every variable set through the cluster names (CLICKHOUSE_CLUSTER, the
	// Kafka brokers, the database) is the same in every pod.
	for _, n := range []string{"CLICKHOUSE_ADDR", "CLICKHOUSE_DATABASE", "CLICKHOUSE_USER", "CLICKHOUSE_CLUSTER", "CLICKHOUSE_TLS"} {
		jc := j.Spec.Template.Spec.Containers[0]
		if env(wc, n) != env(ac, n) || env(wc, n) != env(jc, n) {
			t.Errorf("%s differs: worker %q, api %q, migrate %q", n, env(wc, n), env(ac, n), env(jc, n))
		}
	}
	for _, n := range []string{"KAFKA_BROKERS", "BOUNCER_TOPIC", "BOUNCER_SECRET_KEY"} {
		if !reflect.DeepEqual(envVar(wc, n), envVar(ac, n)) {
			t.Errorf("%s differs between worker and api: %+v, %+v", n, envVar(wc, n), envVar(ac, n))
		}
	}
}

// checkPod checks one pod template: the container runs `bouncer CMD`, every
// variable is one CMD reads, Secret references resolve, the image is
// pinned, memory is bounded, and long-running commands have their probes on
// the ops port, which listens on every interface.
func checkPod(t *testing.T, r *rendered, what string, tpl corev1.PodTemplateSpec, cmd string, opsPort int32, opsEnv string) {
	t.Helper()
	spec := tpl.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%s: want one container, got %d (+%d init)", what, len(spec.Containers), len(spec.InitContainers))
	}
	c := spec.Containers[0]
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != cmd {
		t.Errorf("%s: command %q args %q, want the image's entrypoint with args [%s ...]", what, c.Command, c.Args, cmd)
	}
	reads := commandEnv[cmd]
	for _, e := range c.Env {
		if !reads[e.Name] {
			t.Errorf("%s: sets %s, which `bouncer %s` does not read (see bouncer %s --help)", what, e.Name, cmd, cmd)
		}
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("%s: envFrom cannot be checked against what bouncer reads; list the variables under env", what)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks is not false, so Kubernetes adds SERVICE_PORT variables bouncer does not read", what)
	}
	for _, ref := range secretRefs(spec) {
		if s := r.secrets[ref.Name]; s != nil {
			if _, ok := s.StringData[ref.Key]; !ok && !optional(ref) {
				t.Errorf("%s: reads key %s of Secret %s, which does not hold it", what, ref.Key, ref.Name)
			}
		} else if ref.Name != r.values["secrets"].(map[string]any)["existingSecret"] {
			t.Errorf("%s: reads Secret %s, which is neither rendered nor secrets.existingSecret", what, ref.Name)
		}
	}
	checkImage(t, what, c.Image)

	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Memory().IsZero() || lim.Memory().IsZero() || req.Cpu().IsZero() {
		t.Errorf("%s: want memory request and limit and a CPU request, got requests %v limits %v", what, req, lim)
	} else if lim.Memory().Cmp(*req.Memory()) < 0 {
		t.Errorf("%s: memory limit %v below its request %v", what, lim.Memory(), req.Memory())
	}

	sc, psc := c.SecurityContext, spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want runAsNonRoot, a read-only root file system and no privilege escalation", what)
	}

	if opsPort == 0 {
		return
	}
	if got, want := env(c, opsEnv), fmt.Sprintf("0.0.0.0:%d", opsPort); got != want {
		t.Errorf("%s: %s=%q, want %s (the default 127.0.0.1 is unreachable for probes and Prometheus)", what, opsEnv, got, want)
	}
	if !hasPortNumber(c, "ops", opsPort) {
		t.Errorf("%s: no container port ops = %d", what, opsPort)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", what, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s: %s probe GET %s on port %s, want %s on ops", what, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port.String(), p.path)
		}
	}
	if c.StartupProbe != nil && c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold < 300 {
		t.Errorf("%s: the startup probe gives %ds; loading the suppression change log may take minutes", what, c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold)
	}
}

var pinnedTag = regexp.MustCompile(`^[^:@/]+(?:[./-][^:@/]+)*(?:/[^:@/]+)*:([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})(?:@sha256:[0-9a-f]{64})?$`)

func checkImage(t *testing.T, what, image string) {
	t.Helper()
	m := pinnedTag.FindStringSubmatch(image)
	if m == nil {
		t.Errorf("%s: image %q has no tag", what, image)
		return
	}
	if m[1] == "latest" {
		t.Errorf("%s: image %q is not pinned", what, image)
	}
}

func checkDefaults(t *testing.T, r *rendered) {
	want := []string{"Secret/" + secretName, "Deployment/" + apiName, "Service/" + apiName, "Secret/" + jobName, "Job/" + jobName, "PodDisruptionBudget/" + workerName, "PodDisruptionBudget/" + apiName, "Deployment/" + workerName}
	got := slices.Clone(r.order)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	w := r.deployments[workerName]
	if got := w.Spec.Template.Spec.Containers[0].Image; got != "ghcr.io/bouncer-mail/bouncer:0.1.0" {
		t.Errorf("worker image %q, want the appVersion's tag", got)
	}
	if n := *w.Spec.Replicas; n != 2 {
		t.Errorf("worker replicas %d, want 2", n)
	}
	if _, ok := r.secrets[secretName].StringData["BOUNCER_SECRET_KEY"]; !ok {
		t.Errorf("Secret %s holds no BOUNCER_SECRET_KEY", secretName)
	}
	// The release Secret changes roll the pods.
	if w.Spec.Template.Annotations["checksum/secret"] == "" {
		t.Errorf("worker pods carry no checksum/secret annotation: a changed Secret would not restart them")
	}
	for _, e := range w.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "CLICKHOUSE_CLUSTER" {
			t.Errorf("single server: CLICKHOUSE_CLUSTER is set")
		}
	}
}

func checkCluster(t *testing.T, r *rendered) {
	for _, c := range []corev1.Container{
		r.jobs[jobName].Spec.Template.Spec.Containers[0],
		r.deployments[workerName].Spec.Template.Spec.Containers[0],
		r.deployments[apiName].Spec.Template.Spec.Containers[0],
	} {
		if got := env(c, "CLICKHOUSE_CLUSTER"); got != "bouncer" {
			t.Errorf("container %s: CLICKHOUSE_CLUSTER=%q, want bouncer", c.Name, got)
		}
		if got := env(c, "CLICKHOUSE_TLS"); got != "true" {
			t.Errorf("container %s: CLICKHOUSE_TLS=%q, want true", c.Name, got)
		}
	}
	wc := r.deployments[workerName].Spec.Template.Spec.Containers[0]
	if ref := envVar(wc, "KAFKA_SASL_PASSWORD"); ref == nil || ref.ValueFrom == nil || ref.ValueFrom.SecretKeyRef == nil {
		t.Errorf("worker: KAFKA_SASL_PASSWORD is not read from a Secret: %+v", ref)
	}
	if ws := r.deployments[workerName].Spec.Template.Spec; len(ws.TopologySpreadConstraints) != 1 || len(ws.Tolerations) != 1 {
		t.Errorf("worker: topologySpreadConstraints %+v and tolerations %+v, want the one of each given", ws.TopologySpreadConstraints, ws.Tolerations)
	}
	if got := env(r.deployments[apiName].Spec.Template.Spec.Containers[0], "BOUNCER_API_REPLICAS"); got != "3" {
		t.Errorf("api: BOUNCER_API_REPLICAS=%q, want 3", got)
	}
}

func checkExistingSecret(t *testing.T, r *rendered) {
	for name := range r.secrets {
		t.Errorf("secrets.existingSecret is set, yet the chart renders Secret %s", name)
	}
	for _, d := range r.deployments {
		for _, ref := range secretRefs(d.Spec.Template.Spec) {
			if ref.Name != "bouncer-credentials" {
				t.Errorf("Deployment %s reads Secret %s, want bouncer-credentials", d.Name, ref.Name)
			}
		}
	}
	wc := r.deployments[workerName].Spec.Template.Spec.Containers[0]
	if got := wc.Image; !strings.HasPrefix(got, "registry.example.com/bouncer:3f9c2e1@sha256:") {
		t.Errorf("worker image %q, want the repository, tag and digest given", got)
	}
	if env(wc, "BOUNCER_SMTP_RELAY") != "smtp.example.com:587" || envVar(wc, "BOUNCER_SMTP_PASSWORD") == nil {
		t.Errorf("worker: forwarding variables missing: relay %q, password %+v", env(wc, "BOUNCER_SMTP_RELAY"), envVar(wc, "BOUNCER_SMTP_PASSWORD"))
	}
}

func checkMonitoring(t *testing.T, r *rendered) {
	if len(r.monitors) != 2 {
		t.Fatalf("want ServiceMonitors for worker and api, got %v", r.order)
	}
	for _, comp := range []string{"worker", "api"} {
		m := r.monitors["bouncer-"+comp]
		if m == nil {
			t.Errorf("no ServiceMonitor bouncer-%s", comp)
			continue
		}
		if m.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("ServiceMonitor %s: labels %v lack monitoring.serviceMonitor.labels", m.Name, m.Labels)
		}
		sel, err := metav1.LabelSelectorAsMap(&m.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		d := r.deployments["bouncer-"+comp]
		var found []string
		for _, s := range r.services {
			if !subset(sel, s.Labels) {
				continue
			}
			found = append(found, s.Name)
			if !subset(s.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("ServiceMonitor %s selects Service %s, whose pods are not %s's", m.Name, s.Name, d.Name)
			}
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "ops" && p.TargetPort.String() == "ops" }) {
				t.Errorf("Service %s has no port ops", s.Name)
			}
		}
		if len(found) != 1 {
			t.Errorf("ServiceMonitor %s selects Services %v, want one", m.Name, found)
		}
		if len(m.Spec.Endpoints) != 1 || m.Spec.Endpoints[0].Port != "ops" || m.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor %s: endpoints %+v, want port ops, /metrics", m.Name, m.Spec.Endpoints)
			continue
		}
		job := ""
		for _, rc := range m.Spec.Endpoints[0].RelabelConfigs {
			if rc.TargetLabel == "job" && rc.Replacement != nil {
				job = *rc.Replacement
			}
		}
		if job != "bouncer-"+comp {
			t.Errorf("ServiceMonitor %s: job %q, want bouncer-%s (alerts.yml matches job=~\"bouncer-.*\", recording rules by job)", m.Name, job, comp)
		}
	}

	// The PrometheusRule is deploy/prometheus's recording.yml then alerts.yml.
	rule := r.rules["bouncer"]
	if rule == nil {
		t.Fatalf("no PrometheusRule bouncer: %v", r.order)
	}
	var want []monitoringv1.RuleGroup
	for _, f := range []string{"recording.yml", "alerts.yml"} {
		data, err := os.ReadFile(filepath.Join("..", "prometheus", f))
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Groups []monitoringv1.RuleGroup `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(data, &file); err != nil {
			t.Fatalf("deploy/prometheus/%s: %v", f, err)
		}
		want = append(want, file.Groups...)
	}
	if len(want) == 0 || !reflect.DeepEqual(rule.Spec.Groups, want) {
		t.Errorf("PrometheusRule %s differs from deploy/prometheus/recording.yml + alerts.yml; copy them into %s/files/", rule.Name, chartDir)
	}
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, rl := range g.Rules {
			if rl.Alert != "" {
				alerts++
			}
		}
	}
	if alerts == 0 {
		t.Errorf("PrometheusRule %s holds no alerts", rule.Name)
	}
	if !subset(map[string]string{"release": "kube-prometheus-stack"}, rule.Labels) {
		t.Errorf("PrometheusRule %s: labels %v lack monitoring.prometheusRule.labels", rule.Name, rule.Labels)
	}
	if r.pdbs[apiName] != nil {
		t.Errorf("api.podDisruptionBudget.enabled=false, yet PodDisruptionBudget %s is rendered", apiName)
	}
	if got := env(r.deployments[workerName].Spec.Template.Spec.Containers[0], "BOUNCER_MAX_BATCH_MESSAGES"); got != "10000" {
		t.Errorf("worker.env BOUNCER_MAX_BATCH_MESSAGES: got %q, want 10000", got)
	}
}

// TestChartFilesMatchPrometheus: the chart's copies of the rule files are
// the files of deploy/prometheus (Helm cannot read outside the chart).
func TestChartFilesMatchPrometheus(t *testing.T) {
	for _, f := range []string{"recording.yml", "alerts.yml"} {
		src, err := os.ReadFile(filepath.Join("..", "prometheus", f))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := os.ReadFile(filepath.Join(chartDir, "files", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(src, cp) {
			t.Errorf("%s/files/%s differs from deploy/prometheus/%s: cp deploy/prometheus/%s deploy/helm/%s/files/", chartDir, f, f, f, chartDir)
		}
	}
}

// TestRenderRefuses: missing required values, an unpinned image and values
// the chart does not have (values.schema.json) stop the render with a
// message that says what is wrong.
func TestRenderRefuses(t *testing.T) {
	c := loadChart(t)
	base := func() map[string]any {
		return readValues(t, filepath.Join(chartDir, "ci", "defaults-values.yaml"))
	}
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"no Kafka", func(v map[string]any) { delete(v, "kafka") }, "kafka.brokers: set Kafka's bootstrap brokers"},
		{"no ClickHouse", func(v map[string]any) { delete(v, "clickhouse") }, "clickhouse.addr: set"},
		{"no secret key", func(v map[string]any) { delete(v, "secrets") }, "bouncer secrets generate"},
		{"latest", func(v map[string]any) { v["image"] = map[string]any{"tag": "latest"} }, "not pinned"},
		{"misspelt value", func(v map[string]any) { v["worker"] = map[string]any{"replica": 3} }, "replica"},
		{"unknown variable form", func(v map[string]any) { v["api"] = map[string]any{"env": map[string]any{"bouncer_api_addr": "x"}} }, "bouncer_api_addr"},
		{"SASL without user", func(v map[string]any) { v["kafka"].(map[string]any)["saslMechanism"] = "plain" }, "kafka.saslUsername"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.edit(v)
			_, _, err := render(c, v)
			t.Logf("refused: %v", err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("render: err %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// summary describes the rendered objects in a few lines each.
func summary(r *rendered) string {
	var b strings.Builder
	for _, o := range r.order {
		kind, name, _ := strings.Cut(o, "/")
		fmt.Fprintf(&b, "%s %s", kind, name)
		switch kind {
		case "Deployment":
			d := r.deployments[name]
			c := d.Spec.Template.Spec.Containers[0]
			fmt.Fprintf(&b, ": replicas %d, %s %v, grace %ds, requests cpu %v mem %v, limit mem %v, ports %s, probes startup %s liveness %s readiness %s",
				*d.Spec.Replicas, c.Image, c.Args, *d.Spec.Template.Spec.TerminationGracePeriodSeconds,
				c.Resources.Requests.Cpu(), c.Resources.Requests.Memory(), c.Resources.Limits.Memory(), ports(c),
				c.StartupProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				fmt.Fprintf(&b, ", preStop sleep %ds", c.Lifecycle.PreStop.Sleep.Seconds)
			}
			fmt.Fprintf(&b, "\n    env: %s", envSummary(c))
		case "Job":
			j := r.jobs[name]
			c := j.Spec.Template.Spec.Containers[0]
			fmt.Fprintf(&b, ": hook %s (weight %s), %s %v, backoffLimit %d\n    env: %s", j.Annotations["helm.sh/hook"], j.Annotations["helm.sh/hook-weight"], c.Image, c.Args, *j.Spec.BackoffLimit, envSummary(c))
		case "Service":
			s := r.services[name]
			fmt.Fprintf(&b, ": %s, ports", s.Spec.Type)
			for _, p := range s.Spec.Ports {
				fmt.Fprintf(&b, " %s %d->%s", p.Name, p.Port, p.TargetPort.String())
			}
		case "Secret":
			s := r.secrets[name]
			keys := make([]string, 0, len(s.StringData))
			for k := range s.StringData {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Fprintf(&b, ": keys %v", keys)
			if h := s.Annotations["helm.sh/hook"]; h != "" {
				fmt.Fprintf(&b, ", hook %s (weight %s)", h, s.Annotations["helm.sh/hook-weight"])
			}
		case "PodDisruptionBudget":
			fmt.Fprintf(&b, ": maxUnavailable %s", r.pdbs[name].Spec.MaxUnavailable.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}

func ports(c corev1.Container) string {
	var s []string
	for _, p := range c.Ports {
		s = append(s, fmt.Sprintf("%s %d", p.Name, p.ContainerPort))
	}
	return strings.Join(s, ", ")
}

func envSummary(c corev1.Container) string {
	var s []string
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			s = append(s, e.Name+"=<secret "+e.ValueFrom.SecretKeyRef.Name+">")
		} else {
			s = append(s, e.Name+"="+e.Value)
		}
	}
	return strings.Join(s, " ")
}

func env(c corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}

func envVar(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func envDuration(t *testing.T, c corev1.Container, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(env(c, name))
	if err != nil {
		t.Fatalf("container %s: %s=%q: %v", c.Name, name, env(c, name), err)
	}
	return d
}

func grace(d *appsv1.Deployment) time.Duration {
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second // Kubernetes' default
}

func hookWeight(t *testing.T, m metav1.ObjectMeta) int {
	t.Helper()
	var w int
	if s := m.Annotations["helm.sh/hook-weight"]; s != "" {
		if _, err := fmt.Sscan(s, &w); err != nil {
			t.Fatalf("%s: helm.sh/hook-weight %q: %v", m.Name, s, err)
		}
	}
	return w
}

func secretRefs(spec corev1.PodSpec) []*corev1.SecretKeySelector {
	var out []*corev1.SecretKeySelector
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef)
			}
		}
	}
	return out
}

func optional(ref *corev1.SecretKeySelector) bool { return ref.Optional != nil && *ref.Optional }

func hasPort(c corev1.Container, name string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name })
}

func hasPortNumber(c corev1.Container, name string, n int32) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == name && p.ContainerPort == n })
}

func hasPDB(r *rendered, d *appsv1.Deployment) bool {
	for _, p := range r.pdbs {
		sel, _ := metav1.LabelSelectorAsMap(p.Spec.Selector)
		if subset(sel, d.Spec.Template.Labels) {
			return true
		}
	}
	return false
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
