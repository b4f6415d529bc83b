package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// runSupCmd runs bouncer with args in-process and returns its output.
func runSupCmd(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = run(ctx, append([]string{"bouncer"}, args...), envFunc(env), strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

// readExportCSV parses an export: its header and rows.
func readExportCSV(t *testing.T, s string) ([]string, [][]string) {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("export is not CSV with a header: %v\n%s", err, s)
	}
	return recs[0], recs[1:]
}

func csvColumn(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[i])
	}
	sort.Strings(out)
	return out
}

func TestSuppressionsUsage(t *testing.T) {
	env := map[string]string{}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"suppressions"}, "want import or export"},
		{[]string{"suppressions", "import", "--list", "hard_bounces", "--account", "acme", "x.csv"}, `--list "hard_bounces"`},
		{[]string{"suppressions", "import", "--account", "acme", "x.csv"}, "missing --list"},
		{[]string{"suppressions", "export", "--list", "bounces"}, "missing --account"},
		{[]string{"suppressions", "import", "--list", "bounces", "--account", "acme"}, "want one FILE"},
		{[]string{"suppressions", "import", "--list", "bounces", "--account", "acme", filepath.Join(t.TempDir(), "none.csv")}, "no such file"},
		{[]string{"suppressions", "import", "--list", "bounces", "--account", "a/b", "x.csv"}, "--account"},
		{[]string{"suppressions", "export", "--list", "bounces", "--account", "acme", "--group", "3"}, "--group"},
		{[]string{"suppressions", "export", "--list", "bounces", "--account", "acme", "--time-format", "iso"}, "--time-format"},
	} {
		_, _, err := runSupCmd(t, env, "", tc.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v (exit %d), want exit 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	out, _, err := runSupCmd(t, env, "", "suppressions", "import", "--help")
	if err != nil || !strings.Contains(out, "bouncer suppressions import --list bounces --account acme bounces.csv") || !strings.Contains(out, "-skip-bad") {
		t.Errorf("import --help: %v\n%s", err, out)
	}
}

func TestSuppressionsImportExport(t *testing.T) {
	addr := testenv.ClickHouse(t)
	brokers := testenv.Kafka(t)
	db := testenv.Database(t, addr)
	changelog := testenv.Topic(t, brokers, 2)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db,
		"KAFKA_BROKERS": brokers, "BOUNCER_CHANGELOG_TOPIC": changelog}
	if out, errs, err := runSupCmd(t, env, "", "migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s%s", err, out, errs)
	}
	file := filepath.Join("testdata", "sendgrid_bounces.csv")
	want := []string{"ana@web.de", "j.doe@yahoo.com", "kim.lee@gmail.com", "multi.line@icloud.com",
		"no-such-user@example.org", "rob.smith@outlook.com", "sales@gone-domain.net"}

	// A bad row: reported with its line (a quoted reason spans lines 6-7),
	// skipped, the good rows stored, exit 1.
	out, errs, err := runSupCmd(t, env, "", "suppressions", "import", "--list", "bounces", "--account", "acme", "--batch-size", "3", file)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("import with a bad row: err %v, want exit 1\n%s", err, errs)
	}
	if !strings.Contains(errs, `line 8: email "not-an-address" is not an address`) {
		t.Errorf("stderr does not name line 8:\n%s", errs)
	}
	if !strings.Contains(errs, "suppressions import: 3 imported") {
		t.Errorf("no progress line on stderr:\n%s", errs)
	}
	if strings.TrimSpace(out) != "imported 7, skipped 1" {
		t.Errorf("stdout %q, want the summary", out)
	}

	export := func(account, list string, extra ...string) ([]string, [][]string) {
		t.Helper()
		out, errs, err := runSupCmd(t, env, "", append([]string{"suppressions", "export", "--list", list, "--account", account}, extra...)...)
		if err != nil {
			t.Fatalf("export %s %s: %v\n%s", account, list, err, errs)
		}
		return readExportCSV(t, out)
	}
	header, rows := export("acme", "bounces")
	if !slices.Equal(header, []string{"email", "created", "status", "reason"}) {
		t.Errorf("export header %q, want SendGrid's email,created,status,reason", header)
	}
	var got []string
	for _, r := range rows {
		got = append(got, strings.ToLower(r[0]))
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("round trip: exported %q, want %q", got, want)
	}
	byEmail := map[string][]string{}
	for _, r := range rows {
		byEmail[r[0]] = r
	}
	if r := byEmail["Rob.Smith@Outlook.com"]; r == nil || r[1] != "2025-11-04 08:01:09" || r[2] != "5.5.0" {
		t.Errorf("Rob.Smith@Outlook.com (trimmed, case kept): %q", r)
	}
	if r := byEmail["j.doe@yahoo.com"]; r == nil || r[1] != "2025-11-05 00:00:00" {
		t.Errorf("unix created: %q", r)
	}
	if r := byEmail["no-such-user@example.org"]; r == nil || r[1] != "2025-10-30 22:15:00" {
		t.Errorf("RFC 3339 created: %q", r)
	}
	if r := byEmail["multi.line@icloud.com"]; r == nil || !strings.Contains(r[3], "\nplease check") {
		t.Errorf("multi-line reason: %q", r)
	}
	if r := byEmail["sales@gone-domain.net"]; r == nil {
		t.Error("row without created is missing")
	} else if c, err := time.Parse(sendgridTime, r[1]); err != nil || time.Since(c) > 10*time.Minute {
		t.Errorf("missing created should be now: %q", r[1])
	}

	// An export file re-imports to the same entries: with --output, --skip-bad,
	// --time-format unix, and the whole file again.
	st := testenv.Open(t, addr, db)
	versions := func() map[string]uint64 {
		rows, err := st.Query(context.Background(), "SELECT email_norm, max(version) FROM suppressions WHERE account_id = 'acme' AND list = 'bounces' GROUP BY email_norm")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]uint64{}
		for rows.Next() {
			var e string
			var v uint64
			if err := rows.Scan(&e, &v); err != nil {
				t.Fatal(err)
			}
			m[e] = v
		}
		return m
	}
	before := versions()
	out, errs, err = runSupCmd(t, env, "", "suppressions", "import", "--list", "bounces", "--account", "acme", file, "--skip-bad")
	if err != nil || strings.TrimSpace(out) != "imported 7, skipped 1" || !strings.Contains(errs, "line 8:") {
		t.Fatalf("import --skip-bad: %v, stdout %q\n%s", err, out, errs)
	}
	after := versions()
	for e, v := range before {
		if e != "sales@gone-domain.net" && after[e] != v { // no created: now, newer
			t.Errorf("re-import changed the version of %s: %d then %d", e, v, after[e])
		}
	}
	if len(after) != len(before) {
		t.Errorf("re-import: %d entries, then %d", len(before), len(after))
	}
	_, rows = export("acme", "bounces") // sales@gone-domain.net's "now" moved on
	unixFile := filepath.Join(t.TempDir(), "bounces.csv")
	if _, errs, err := runSupCmd(t, env, "", "suppressions", "export", "--list", "bounces", "--account", "acme", "--time-format", "unix", "--output", unixFile); err != nil || !strings.Contains(errs, "exported 7 entries") {
		t.Fatalf("export --output: %v\n%s", err, errs)
	}
	b, err := os.ReadFile(unixFile)
	if err != nil {
		t.Fatal(err)
	}
	out, errs, err = runSupCmd(t, env, string(b), "suppressions", "import", "--list", "bounces", "--account", "acme", "-")
	if err != nil || strings.TrimSpace(out) != "imported 7, skipped 0" {
		t.Fatalf("re-import of the export from stdin: %v, stdout %q\n%s", err, out, errs)
	}
	if _, rows2 := export("acme", "bounces"); !slices.Equal(csvColumn(rows2, 0), csvColumn(rows, 0)) || !slices.Equal(csvColumn(rows2, 1), csvColumn(rows, 1)) {
		t.Errorf("export, import, export differs:\n%q\n%q", rows, rows2)
	}
	if v := versions(); !maps.Equal(v, after) {
		t.Errorf("importing the export changed versions: %v then %v", after, v)
	}

	// Tenancy: another account, and another list of the same account, are empty.
	if h, r := export("globex", "bounces"); len(r) != 0 || len(h) != 4 {
		t.Errorf("globex's bounces: %q %q, want the header only", h, r)
	}
	if _, r := export("acme", "blocks"); len(r) != 0 {
		t.Errorf("acme's blocks: %q, want none", r)
	}

	// Columns in any order, unknown ones ignored; spam_reports' own header.
	spam := filepath.Join("testdata", "sendgrid_spam_reports.csv")
	if out, errs, err := runSupCmd(t, env, "", "suppressions", "import", "--list", "spam_reports", "--account", "globex", spam); err != nil || strings.TrimSpace(out) != "imported 2, skipped 0" {
		t.Fatalf("spam_reports import: %v %q\n%s", err, out, errs)
	}
	h, r := export("globex", "spam_reports")
	if !slices.Equal(h, []string{"email", "created", "ip"}) || !slices.Equal(csvColumn(r, 0), []string{"Complainer@AOL.com", "second@hotmail.com"}) {
		t.Errorf("globex spam_reports export: %q %q", h, r)
	}
	if _, r := export("acme", "spam_reports"); len(r) != 0 {
		t.Errorf("acme sees globex's spam reports: %q", r)
	}

	// Every imported entry is on the change log.
	keys := readTopicKeys(t, brokers, changelog)
	for _, e := range want {
		if !keys["acme/bounces/0/"+e] {
			t.Errorf("change log lacks acme/bounces/0/%s (has %d keys)", e, len(keys))
		}
	}
	if !keys["globex/spam_reports/0/complainer@aol.com"] {
		t.Errorf("change log lacks globex/spam_reports/0/complainer@aol.com")
	}

	// Bounces are classified from their reason.
	var class string
	if err := st.QueryRow(context.Background(), "SELECT argMax(bounce_classification, version) FROM suppressions WHERE account_id = 'acme' AND list = 'bounces' AND email_norm = 'kim.lee@gmail.com'").Scan(&class); err != nil || class != "Invalid Address" {
		t.Errorf("kim.lee@gmail.com classification %q (%v), want Invalid Address", class, err)
	}
}

// TestSuppressionsLargeList imports more rows than one insert batch and
// exports more than one page, with the change log off.
func TestSuppressionsLargeList(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	env := map[string]string{"CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db}
	if out, errs, err := runSupCmd(t, env, "", "migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s%s", err, out, errs)
	}
	const n = 23456
	var b strings.Builder
	b.WriteString("email,created\n")
	for i := range n {
		fmt.Fprintf(&b, "user%05d@example.com,%d\n", i, 1700000000+i)
	}
	out, errs, err := runSupCmd(t, env, b.String(), "suppressions", "import", "--list", "unsubscribes", "--account", "bulk", "--publish-changes=false", "-")
	if err != nil || strings.TrimSpace(out) != fmt.Sprintf("imported %d, skipped 0", n) || strings.Count(errs, "suppressions import:") != 5 {
		t.Fatalf("import: %v %q\n%s", err, out, errs)
	}
	out, errs, err = runSupCmd(t, env, "", "suppressions", "export", "--list", "global_unsubscribes", "--account", "bulk")
	if err != nil {
		t.Fatalf("export: %v\n%s", err, errs)
	}
	h, rows := readExportCSV(t, out)
	if !slices.Equal(h, []string{"email", "created"}) || len(rows) != n {
		t.Fatalf("export: header %q, %d rows, want %d", h, len(rows), n)
	}
	for i, r := range rows {
		if want := fmt.Sprintf("user%05d@example.com", i); r[0] != want {
			t.Fatalf("row %d: %q, want %s (address order, each once)", i, r[0], want)
		}
	}
	// A group's unsubscribes are another list.
	if out, _, err := runSupCmd(t, env, "", "suppressions", "export", "--list", "unsubscribes", "--group", "7", "--account", "bulk"); err != nil || strings.TrimSpace(out) != "email,created" {
		t.Errorf("group 7: %v %q", err, out)
	}
}
