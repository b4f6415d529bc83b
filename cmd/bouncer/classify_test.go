package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runCmd(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"bouncer"}, args...), envFunc(nil), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestClassifyOneBounce(t *testing.T) {
	out, _, err := runCmd(t, "", "classify", "--email", "kim@gmail.com", "550 5.1.1 The email account that you tried to reach does not exist.")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("output is not one JSON object: %q", out)
	}
	want := map[string]any{"bounce_type": "hard", "bounce_classification": "Invalid Address", "reason_code": "user_unknown", "rule": "google.user_unknown.does_not_exist"}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %v, want %v", k, res[k], v)
		}
	}
	out, _, err = runCmd(t, "", "classify", "--status", "5.1.1", "--type", "blocked", "Requested action not taken")
	if err != nil || !strings.Contains(out, `"reason_code":"user_unknown"`) {
		t.Errorf("--status form: %q, %v", out, err)
	}
}

func TestClassifyStream(t *testing.T) {
	long := strings.Repeat("x", 200_000) // far longer than bufio's default line
	in := strings.Join([]string{
		`{"event":"bounce","email":"a@yahoo.com","reason":"554 delivery error: dd This user doesn't have a yahoo.com account"}`,
		``,
		`   `,
		`not json`,
		`{"event":"deferred","response":"451 4.7.1 Greylisted, please try again later"}`,
		`{"reason":5}`,
		`{"event":"delivered","email":"a@example.com"}`,
		`[1,2]`,
		`{"reason":"552 5.2.2 mailbox full ` + long + `"}`,
		`{"reason":"550 5.1.1 no such user"}`, // last line without a newline
	}, "\n")
	out, _, err := runCmd(t, in, "classify")
	if err != nil {
		t.Fatalf("exit with error on bad lines: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		`"reason_code":"user_unknown"`,
		`"error":"line 4: want a JSON object`,
		`"reason_code":"greylisted"`,
		`"error":"line 6: field \"reason\"`,
		`"error":"line 7: not a bounce`,
		`"error":"line 8: want a JSON object, got an array`,
		`"reason_code":"mailbox_full"`,
		`"reason_code":"user_unknown"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d output lines, want %d (blank lines skipped, one per other line):\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s, want it to contain %s", i+1, lines[i], w)
		}
		if !json.Valid([]byte(lines[i])) {
			t.Errorf("line %d is not JSON: %s", i+1, lines[i])
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("device gone") }

func TestClassifyStreamIOErrors(t *testing.T) {
	err := run(context.Background(), []string{"bouncer", "classify"}, envFunc(nil), strings.NewReader("{\"reason\":\"550 user unknown\"}\n"), failingWriter{}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "write output") {
		t.Errorf("write failure: err = %v, want a write error", err)
	}
	err = run(context.Background(), []string{"bouncer", "classify"}, envFunc(nil), failingReader{}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "read input") {
		t.Errorf("read failure: err = %v, want a read error", err)
	}
}

func TestClassifyUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badRules := filepath.Join(dir, "bad.rules")
	os.WriteFile(badRules, []byte("# ok\nx.one mailbox_ful text: full\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"bad type", []string{"classify", "--type", "soft", "x"}, "--type", 2},
		{"bad status", []string{"classify", "--status", "5.1", "x"}, "--status", 2},
		{"two texts", []string{"classify", "a", "b"}, "one text argument", 2},
		{"deferred is fine but delivered is not", []string{"classify", "--event", "delivered", "x"}, "not a bounce", 2},
		{"bad rules file names the line", []string{"classify", "--rules", badRules, "x"}, "bad.rules:2: unknown reason", 1},
		{"missing rules file", []string{"classify", "--rules", filepath.Join(dir, "nope"), "x"}, "open rules file", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCmd(t, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if exitCode(err) != tt.code {
				t.Errorf("exit code %d, want %d", exitCode(err), tt.code)
			}
		})
	}
}

func TestClassifyRulesFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ops.rules")
	os.WriteFile(path, []byte("ops.stuffed mailbox_full text: box stuffed\n"), 0o600)
	var out bytes.Buffer
	err := run(context.Background(), []string{"bouncer", "classify", "550 box stuffed"}, envFunc(map[string]string{"BOUNCER_RULES": path}), strings.NewReader(""), &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), `"rule":"ops.stuffed"`) {
		t.Fatalf("BOUNCER_RULES not used: %q, %v", out.String(), err)
	}
}

func TestHelpDocumentsBothForms(t *testing.T) {
	out, _, err := runCmd(t, "", "classify", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`bouncer classify [flags] "SMTP REPLY TEXT"`, "< events.jsonl", "--status", "--rules", "BOUNCER_RULES"} {
		if !strings.Contains(out, want) {
			t.Errorf("classify --help lacks %q", want)
		}
	}
	out, _, err = runCmd(t, "", "help")
	if err != nil || !strings.Contains(out, "worker") || !strings.Contains(out, "classify") {
		t.Errorf("bouncer help: %q %v", out, err)
	}
	if _, _, err := runCmd(t, "", "nosuchcommand"); exitCode(err) != 2 {
		t.Errorf("unknown command: exit %d, want 2", exitCode(err))
	}
}

func TestParseWindow(t *testing.T) {
	now := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	w, err := parseWindow("", "", now)
	if err != nil || !w.since.Equal(now.AddDate(0, 0, -7)) || !w.until.Equal(now) {
		t.Errorf("defaults %v %v, %v: want the last 7 days", w.since, w.until, err)
	}
	w, err = parseWindow("2026-11-20", "2026-11-21T06:00:00Z", now)
	if err != nil || !w.since.Equal(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)) || !w.until.Equal(time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("dates: %v %v, %v", w.since, w.until, err)
	}
	for _, bad := range [][2]string{{"20.11.2026", ""}, {"2026-11-21", "2026-11-20"}} {
		if _, err := parseWindow(bad[0], bad[1], now); err == nil || !strings.Contains(err.Error(), "--") {
			t.Errorf("parseWindow(%q, %q): %v, want an error naming the flag", bad[0], bad[1], err)
		}
	}
}
