package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// TestMain lets the test binary stand in for bouncer: a test runs it with
// runAsBouncer=1 as a child process (bench starts workers from its own
// executable, so it cannot run in-process).
func TestMain(m *testing.M) {
	if os.Getenv(runAsBouncer) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const runAsBouncer = "BOUNCER_TEST_RUN_AS_BOUNCER"

// bouncerToFile runs this binary as `bouncer args...` with stdout and
// stderr written to files, as `make demo > log 2>&1` does (not a terminal),
// and returns both.
func bouncerToFile(t *testing.T, env map[string]string, args ...string) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	outF, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer outF.Close()
	errF, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errF.Close()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{runAsBouncer + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = outF, errF
	runErr := cmd.Run()
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	if runErr != nil {
		t.Fatalf("bouncer %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), runErr, o, e)
	}
	return string(o), string(e)
}

// progressLine is a plain progress line: "LABEL: [done|stopped, ]N[ of T] UNIT[ (P%)], SPAN[, RATE UNIT/s]".
var progressLine = regexp.MustCompile(`^([a-z ]+): (done, |stopped, )?([0-9,]+)( of [0-9,]+)? [a-z]+( \(\d+%\))?, ([0-9hms.]+)(, ([0-9,]+) [a-z]+/s)?$`)

// checkProgress checks that stderr is plain lines (no carriage returns, no
// escape sequences), that every line starting with one of labels is a
// progress line with a rate only after two seconds and below maxRate, and
// that each label ends with a done line. Other lines are left alone.
func checkProgress(t *testing.T, what, stderr string, maxRate float64, labels ...string) {
	t.Helper()
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Fatalf("%s: stderr in a file holds carriage returns or escapes:\n%q", what, stderr)
	}
	done := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		label := ""
		for _, want := range labels {
			if strings.HasPrefix(l, want+": ") {
				label = want
			}
		}
		if label == "" {
			continue
		}
		m := progressLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("%s: not a progress line: %q", what, l)
			continue
		}
		if m[2] == "done, " {
			done[label] = true
		}
		if m[8] == "" {
			continue
		}
		if span, err := time.ParseDuration(m[6]); err != nil || span < 2*time.Second {
			t.Errorf("%s: a rate before two seconds: %q", what, l)
		}
		rate, _ := strconv.ParseFloat(strings.ReplaceAll(m[8], ",", ""), 64)
		if rate > maxRate {
			t.Errorf("%s: rate %v above %v: %q", what, rate, maxRate, l)
		}
	}
	for _, label := range labels {
		if !done[label] {
			t.Errorf("%s: no %q done line in stderr:\n%s", what, label, stderr)
		}
	}
}

// TestProgressInAFile runs produce, summary --wait-for and bench with
// stderr going to a file: their progress must be plain lines every few
// seconds, rates only once they mean something, and --quiet must print
// none.
func TestProgressInAFile(t *testing.T) {
	brokers := testenv.Kafka(t)
	addr := testenv.ClickHouse(t)
	topic := testenv.Topic(t, brokers, 2)
	db := testenv.Database(t, addr)
	env := map[string]string{
		"KAFKA_BROKERS": brokers, "CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db,
		"BOUNCER_TOPIC": topic, "BOUNCER_SINK_GROUP": topic + ".sink", "BOUNCER_OPS_ADDR": "127.0.0.1:0",
		"BOUNCER_CHANGELOG_TOPIC": topic + ".suppressions", "BOUNCER_DLQ_TOPIC": topic + ".dlq",
	}
	bouncerToFile(t, env, "migrate")

	// 60,000 messages at 10,000 a second: a line after 5 s, then the
	// last; the rate can never be far above the pace asked for.
	out, errOut := bouncerToFile(t, env, "produce", "--count", "60000", "--rate", "10000")
	t.Logf("produce stderr:\n%s", errOut)
	checkProgress(t, "produce", errOut, 11_000, "producing")
	if n := strings.Count(errOut, "producing: "); n < 2 {
		t.Errorf("produce: %d progress lines in 6 s, want a line every 5 s and the last", n)
	}
	if !strings.HasPrefix(out, "produced 60000 messages") {
		t.Errorf("produce stdout %q", out)
	}
	if _, errOut := bouncerToFile(t, env, "produce", "--count", "2000", "--quiet"); errOut != "" {
		t.Errorf("produce --quiet wrote to stderr: %q", errOut)
	}

	stop, _ := startWorker(t, env)
	out, errOut = bouncerToFile(t, env, "summary", "--wait-for", "62000", "--timeout", "5m")
	t.Logf("summary stderr:\n%s", errOut)
	checkProgress(t, "summary", errOut, 1e6, "stored in clickhouse")
	if !strings.Contains(out, "events consumed") {
		t.Errorf("summary stdout %q", out)
	}
	if _, errOut := bouncerToFile(t, env, "summary", "--wait-for", "62000", "--quiet"); errOut != "" {
		t.Errorf("summary --quiet wrote to stderr: %q", errOut)
	}
	if err := stop(); err != nil {
		t.Fatalf("worker: %v", err)
	}

	// bench produces, then waits for its own worker and for ClickHouse's
	// Kafka engine: three progress reports, each ending in a done line.
	benchEnv := map[string]string{"KAFKA_BROKERS": brokers, "CLICKHOUSE_ADDR": addr}
	out, errOut = bouncerToFile(t, benchEnv, "bench", "--count", "5000", "--partitions", "1", "--timeout", "5m")
	t.Logf("bench stderr:\n%s\nbench stdout:\n%s", errOut, out)
	checkProgress(t, "bench", errOut, 1e6, "producing", "bouncer", "peer")
	if !strings.Contains(out, "ratio bouncer/peer") {
		t.Errorf("bench stdout %q", out)
	}
	_, errOut = bouncerToFile(t, benchEnv, "bench", "--count", "1000", "--partitions", "1", "--timeout", "5m", "--quiet")
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(l, "bench: ") && !strings.Contains(l, "WARN") {
			t.Errorf("bench --quiet: a line that is not a bench step: %q", l)
		}
	}
}
