//go:build fault

package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/enrich"
)

// TestReclassifyKillNine stores bounces and the list entries the sink made
// of them (written straight into ClickHouse, 4 groups of reclassifyN/4
// addresses over two days), then re-classifies them with operator rules
// that change three groups, killing bouncer reclassify with SIGKILL three
// times while it applies, and running it again each time, until a run
// finishes. Afterwards every event holds the classification the rules give
// (no row lost or doubled), each list entry is where the rules put it (a
// user's later delete still wins), the change log holds exactly the
// expected changes with their versions (repeats of one allowed, nothing
// else), the stats days are not read from builds older than the run, and
// a further run finds nothing to change.
func TestReclassifyKillNine(t *testing.T) {
	inst := services(t, "fault-reclassify")
	r := newRun(t, inst)
	c := r.conn()
	ctx := context.Background()
	const n = reclassifyN
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

	bin := func(args ...string) (string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = r.env()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := bin("migrate"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}

	// The texts of the groups and their classification under the built-in
	// rules (what the sink stored).
	builtin := enrich.MustNew()
	class := func(text string) []string {
		res, err := builtin.Classify(enrich.Input{Event: "bounce", Type: "bounce", Reason: text, Email: "x@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		return []string{string(res.BounceType), string(res.Classification), string(res.Reason), res.Rule, res.DecidedBy}
	}
	stuffed, gone, exists, unknown := "550 5.1.1 box stuffed, queue ", "550 zorgle gone forever, ticket ",
		"550 5.1.1 The email account that you tried to reach does not exist.", "550 5.1.1 user unknown"
	if got := class(stuffed + "12"); got[2] != "user_unknown" || got[0] != "hard" {
		t.Fatalf("built-in rules on %q: %v, want a hard user_unknown", stuffed, got)
	}
	if got := class(gone + "12"); got[2] != "unclassified" {
		t.Fatalf("built-in rules on %q: %v, want unclassified", gone, got)
	}
	// i mod 4: 0 stuffed (leaves bounces), 1 stuffed but an earlier user
	// unknown keeps it there, 2 gone (joins bounces), 3 unchanged. Every
	// tenth address of groups 0 and 2 was deleted by its user after the
	// bounce: it stays off.
	ts := fmt.Sprintf("toDateTime(%d + 120 + intDiv(number * 172000, %d))", day.Unix(), n)
	text := fmt.Sprintf("multiIf(number %% 4 < 2, concat('%s', toString(number)), number %% 4 = 2, concat('%s', toString(number)), '%s')", stuffed, gone, exists)
	var classes []string
	for k := range 5 {
		classes = append(classes, fmt.Sprintf("multiIf(number %% 4 < 2, '%s', number %% 4 = 2, '%s', '%s')", class(stuffed + "12")[k], class(gone + "12")[k], class(exists)[k]))
	}
	keeper := "'" + strings.Join(class(unknown), "', '") + "'"
	email := "concat(['a', 'b', 'c', 'd'][number % 4 + 1], toString(number), '@example.org')"
	stmts := []string{
		"INSERT INTO DB.events (ingest_date, ingested_at, kafka_topic, kafka_partition, kafka_offset, msg_index, account_id, event, type, timestamp, " +
			"email, email_norm, domain, address_valid, sg_event_id, reason, bounce_type, bounce_classification, reason_code, rule, decided_by) " +
			"SELECT today(), now(), 'seed', number % 4, number, 0, 'default', 'bounce', 'bounce', " + ts + ", " + email + ", " + email +
			", 'example.org', 1, concat('ev', toString(number)), " + text + ", " + strings.Join(classes, ", ") + " FROM numbers(" + fmt.Sprint(n) + ")",
		// The keepers of group 1: an earlier user unknown.
		"INSERT INTO DB.events (ingest_date, ingested_at, kafka_topic, kafka_partition, kafka_offset, msg_index, account_id, event, type, timestamp, " +
			"email, email_norm, domain, address_valid, sg_event_id, reason, bounce_type, bounce_classification, reason_code, rule, decided_by) " +
			"SELECT today(), now(), 'seed', 0, " + fmt.Sprint(n) + " + number, 0, 'default', 'bounce', 'bounce', " + ts + " - 60, " + email + ", " + email +
			", 'example.org', 1, concat('keep', toString(number)), '" + unknown + "', " + keeper +
			" FROM numbers(" + fmt.Sprint(n) + ") WHERE number % 4 = 1",
		// What the sink made of them: bounces entries of the hard ones,
		"INSERT INTO DB.suppressions (account_id, list, group_id, email_norm, email, created, reason, status, bounce_classification, reason_code, deleted, version, source) " +
			"SELECT account_id, 'bounces', 0, email_norm, email, timestamp, reason, '', bounce_classification, reason_code, 0, toUInt64(toUInt32(timestamp)) * 2, " +
			"concat('event:', sg_event_id) FROM DB.events WHERE bounce_type = 'hard'",
		// and the users' deletes, a minute after the bounce.
		"INSERT INTO DB.suppressions (account_id, list, group_id, email_norm, email, created, reason, status, bounce_classification, reason_code, deleted, version, source) " +
			"SELECT 'default', 'bounces', 0, " + email + ", " + email + ", " + ts + " + 60, '', '', '', '', 1, toUInt64(toUInt32(" + ts + " + 60)) * 2 + 1, 'api' " +
			"FROM numbers(" + fmt.Sprint(n) + ") WHERE number % 4 IN (0, 2) AND number % 40 < 4",
	}
	for _, q := range stmts {
		if err := c.Exec(ctx, strings.ReplaceAll(q, "DB.", r.db+".")); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	if out, err := bin("rollups", "rebuild", "--from", "2026-11-20", "--to", "2026-11-21"); err != nil {
		t.Fatalf("rollups rebuild: %v\n%s", err, out)
	}

	rules := filepath.Join(t.TempDir(), "ops.rules")
	if err := os.WriteFile(rules, []byte("acme.full mailbox_full text: box stuffed\nacme.gone user_unknown text: zorgle gone forever\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"reclassify", "--since", "2026-11-20", "--until", "2026-11-22", "--rules", rules, "--chunk", "400", "--wait", "3s"}
	changelog := r.topic + ".changes"
	r.extra = append(r.extra, "BOUNCER_CHANGELOG_TOPIC="+changelog)

	dry, err := bin(args...)
	if err != nil || !strings.Contains(dry, fmt.Sprintf("%d stored bounces, %d change", n+n/4, 3*n/4)) {
		t.Fatalf("dry run: %v\n%s", err, dry)
	}
	t.Logf("dry run:\n%s", dry)

	changed := func() uint64 {
		v, err := r.count(c, "SELECT count() FROM DB.events WHERE reason_code = 'mailbox_full' OR rule = 'acme.gone'")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i, at := range []uint64{n / 8, n / 3, n / 2} {
		cmd := exec.Command(binary, append(args, "--apply")...)
		cmd.Env = r.env()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.Now().Add(2 * time.Minute)
		for changed() < at && time.Now().Before(deadline) {
			select {
			case err := <-exited:
				t.Fatalf("run %d ended before its kill: %v\n%s", i+1, err, out.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		cmd.Process.Kill()
		<-exited
		t.Logf("run %d killed with %d of %d events changed", i+1, changed(), 3*n/4)
	}
	out, err := bin(append(args, "--apply")...)
	if err != nil {
		t.Fatalf("last run: %v\n%s", err, out)
	}
	t.Logf("last run:\n%s", out)

	// Events: none lost or doubled, each as the rules say.
	for _, q := range []struct {
		name, q string
		want    uint64
	}{
		{"events", "SELECT count() FROM DB.events", uint64(n + n/4)},
		{"distinct identities", "SELECT uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM DB.events", uint64(n + n/4)},
		{"mailbox_full (groups 0 and 1)", "SELECT count() FROM DB.events WHERE reason_code = 'mailbox_full' AND bounce_type = 'soft' AND rule = 'acme.full' AND decided_by = 'text'", uint64(n / 2)},
		{"user_unknown by acme.gone (group 2)", "SELECT count() FROM DB.events WHERE reason_code = 'user_unknown' AND bounce_type = 'hard' AND rule = 'acme.gone'", uint64(n / 4)},
		{"unchanged (group 3 and keepers)", "SELECT count() FROM DB.events WHERE rule NOT IN ('acme.full', 'acme.gone')", uint64(n/4 + n/4)},
	} {
		if got, err := r.count(c, q.q); err != nil || got != q.want {
			t.Errorf("%s: %d (%v), want %d", q.name, got, err, q.want)
		}
	}
	// The lists: on bounces, per group.
	listed := "SELECT count() FROM (SELECT email_norm, argMax(deleted, version) AS d FROM DB.suppressions WHERE list = 'bounces' GROUP BY email_norm) WHERE d = 0 AND email_norm LIKE '%s%%'"
	for _, g := range []struct {
		prefix string
		want   uint64
	}{{"a", 0}, {"b", uint64(n / 4)}, {"c", uint64(n/4 - n/40)}, {"d", uint64(n / 4)}} {
		if got, err := r.count(c, fmt.Sprintf(listed, g.prefix)); err != nil || got != g.want {
			t.Errorf("group %s on bounces: %d (%v), want %d", g.prefix, got, err, g.want)
		}
	}
	// The change log: exactly the expected changes (a change may repeat,
	// with the same version).
	want := map[string]bool{}
	for i := range n {
		if i%4 != 0 && i%4 != 2 || i%40 < 4 {
			continue
		}
		at := day.Unix() + 120 + int64(i)*172000/int64(n)
		k := fmt.Sprintf("default/bounces/0/%c%d@example.org", "abcd"[i%4], i)
		if i%4 == 0 {
			want[fmt.Sprintf("%s deleted v%d", k, 2*at+1)] = true
		} else {
			want[fmt.Sprintf("%s added v%d", k, 2*at)] = true
		}
	}
	got, total := readChangeLog(t, inst.brokers, changelog)
	for k := range got {
		if !want[k] {
			t.Errorf("change log holds %s, not expected", k)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("change log lacks %s", k)
		}
	}
	t.Logf("change log: %d messages, %d distinct changes (expected %d)", total, len(got), len(want))
	// Stats: no build older than the run covers its days.
	status, err := bin("rollups", "status", "--from", "2026-11-20", "--to", "2026-11-21")
	if err != nil || strings.Count(status, " events") != 2 {
		t.Errorf("rollups status after the run: %v\n%s\nwant both days read from the events table", err, status)
	}
	out, err = bin(append(args, "--apply")...)
	if err != nil || !strings.Contains(out, ", 0 change classification") || !strings.Contains(out, "0 change only") {
		t.Errorf("a further run: %v\n%s\nwant nothing to change", err, out)
	}
}

// reclassifyN is how many bounces TestReclassifyKillNine stores (plus a
// quarter of keepers); a multiple of 40.
const reclassifyN = 8000

// readChangeLog reads every message of a change-log topic: the distinct
// "key added|deleted vVERSION" and how many messages there were.
func readChangeLog(t *testing.T, brokers, topic string) (map[string]bool, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", strings.Split(brokers, ",")[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("change log %s: %v", topic, err)
	}
	got, total := map[string]bool{}, 0
	for _, p := range parts {
		pc, err := kafka.DialLeader(ctx, "tcp", strings.Split(brokers, ",")[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: strings.Split(brokers, ","), Topic: topic, Partition: p.ID, MaxBytes: 10 << 20})
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				rd.Close()
				t.Fatalf("read change log partition %d: %v", p.ID, err)
			}
			var v struct {
				Deleted bool   `json:"deleted"`
				Version uint64 `json:"version"`
			}
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatalf("change log message %s: %v", m.Value, err)
			}
			state := "added"
			if v.Deleted {
				state = "deleted"
			}
			got[fmt.Sprintf("%s %s v%d", m.Key, state, v.Version)] = true
			total++
			if m.Offset >= last-1 {
				break
			}
		}
		rd.Close()
	}
	return got, total
}
