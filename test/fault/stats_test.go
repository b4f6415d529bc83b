//go:build fault

package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
)

// statsEvent is one event the stats test produces, with what the test
// needs to compute SendGrid's metrics in Go.
type statsEvent struct {
	Email     string `json:"email"`
	Timestamp int64  `json:"timestamp"`
	Event     string `json:"event"`
	Type      string `json:"type,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Status    string `json:"status,omitempty"`
	ID        string `json:"sg_event_id"`
	MessageID string `json:"sg_message_id"`
	Account   string `json:"account_id"`
	UserAgent string `json:"useragent,omitempty"`
}

// statsAgents are the user agents of the dataset's opens and clicks (the
// worker classifies them into browser, client and device at ingest).
var statsAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
	"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
}

// statsDataset is the stream of TestStatsAfterKillsAndReplays: messages
// over three days for two accounts with deliveries, deferrals, hard and
// soft bounces, blocks, opens, clicks, spam reports, unsubscribes and
// producer drops (phase one); then, once phase one is stored, a second
// send to some of the same recipients, which bouncer must turn into derived
// dropped events for those on a list (phase two).
func statsDataset(messages int) (phase1, phase2 []statsEvent) {
	base := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).Unix()
	domains := []string{"gmail.com", "yahoo.com", "outlook.com", "example.org"}
	for i := range messages {
		acct := "acme"
		if i%5 == 0 {
			acct = "globex"
		}
		email := fmt.Sprintf("r%d@%s", i, domains[i%len(domains)])
		t := base + int64(i)*20
		msg := fmt.Sprintf("m%d", i)
		n := 0
		add := func(dst *[]statsEvent, event, typ, reason, status string, at int64, msg string) {
			n++
			*dst = append(*dst, statsEvent{Email: email, Timestamp: at, Event: event, Type: typ, Reason: reason,
				Status: status, ID: fmt.Sprintf("e%d.%d", i, n), MessageID: msg, Account: acct})
		}
		add(&phase1, "processed", "", "", "", t, msg)
		delivered := false
		switch i % 20 {
		case 14:
			add(&phase1, "deferred", "", "", "", t+1, msg)
			add(&phase1, "delivered", "", "", "", t+5, msg)
			delivered = true
		case 15:
			add(&phase1, "bounce", "bounce", "550 5.1.1 The email account that you tried to reach does not exist.", "5.1.1", t+3, msg)
		case 16:
			add(&phase1, "bounce", "blocked", "554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org", "5.7.1", t+3, msg)
		case 17:
			add(&phase1, "bounce", "bounce", "552 5.2.2 The email account that you tried to reach is over quota.", "5.2.2", t+3, msg)
		case 18:
			add(&phase1, "delivered", "", "", "", t+2, msg)
			add(&phase1, "spamreport", "", "", "", t+600, msg)
			delivered = true
		case 19:
			add(&phase1, "delivered", "", "", "", t+2, msg)
			add(&phase1, "unsubscribe", "", "", "", t+700, msg)
			delivered = true
		default:
			add(&phase1, "delivered", "", "", "", t+2, msg)
			delivered = true
		}
		if delivered && i%3 == 0 {
			add(&phase1, "open", "", "", "", t+60, msg)
			add(&phase1, "open", "", "", "", t+120, msg)
			if i%6 == 0 {
				add(&phase1, "click", "", "", "", t+130, msg)
			}
			for j := len(phase1) - 1; j >= 0 && phase1[j].MessageID == msg; j-- {
				if phase1[j].Event == "open" || phase1[j].Event == "click" {
					phase1[j].UserAgent = statsAgents[(i/3+j)%len(statsAgents)]
				}
			}
		}
		if i%97 == 0 {
			add(&phase1, "dropped", "", "Bounced Address", "5.0.0", t+10, fmt.Sprintf("d%d", i))
		}
		// Phase two: a new message two days later to recipients on a list
		// (dropped by bouncer) and to some that are not (processed).
		if i%3 == 0 && (i%20 == 0 || i%20 == 15 || i%20 == 16 || i%20 == 18 || i%20 == 19) {
			add(&phase2, "processed", "", "", "", t+2*86400, fmt.Sprintf("n%d", i))
		}
	}
	return phase1, phase2
}

// expectedStats computes SendGrid's metrics per account and day in Go
// from what was produced, each sg_event_id once. dropReason says whether
// (and why) bouncer drops a processed event: phase two's processed events
// to recipients with a hard bounce, a spam report or an unsubscribe in
// phase one.
func expectedStats(events []statsEvent, dropReason func(statsEvent) string) map[string]map[string]map[string]uint64 {
	seen := map[string]bool{}
	unique := map[string]bool{}
	out := map[string]map[string]map[string]uint64{}
	for _, e := range events {
		if seen[e.ID] {
			continue // a producer resend
		}
		seen[e.ID] = true
		day := time.Unix(e.Timestamp, 0).UTC().Format(time.DateOnly)
		if out[e.Account] == nil {
			out[e.Account] = map[string]map[string]uint64{}
		}
		m := out[e.Account][day]
		if m == nil {
			m = map[string]uint64{}
			out[e.Account][day] = m
		}
		drops := map[string]string{"Bounced Address": "bounce_drops", "Spam Reporting Address": "spam_report_drops",
			"Unsubscribed Address": "unsubscribe_drops", "Invalid": "invalid_emails"}
		switch e.Event {
		case "processed":
			m["requests"]++
			if r := dropReason(e); r != "" {
				m[drops[r]]++
			} else {
				m["processed"]++
			}
		case "dropped":
			m["requests"]++
			m[drops[e.Reason]]++
		case "delivered", "deferred":
			m[e.Event]++
		case "bounce":
			m[map[string]string{"bounce": "bounces", "blocked": "blocks"}[e.Type]]++
		case "open", "click":
			m[e.Event+"s"]++
			// Unique per period, as SendGrid counts them.
			if k := e.Account + day + e.Event + e.MessageID + e.Email; !unique[k] {
				unique[k] = true
				m["unique_"+e.Event+"s"]++
			}
		case "spamreport":
			m["spam_reports"]++
		case "unsubscribe":
			m["unsubscribes"]++
		}
	}
	return out
}

// TestStatsAfterKillsAndReplays: the stats bouncer reports equal the
// counts computed in Go from the events the test produced, after the
// worker was killed with SIGKILL twice mid-stream and the producer resent
// a share of the events (same sg_event_id, new offsets).
func TestStatsAfterKillsAndReplays(t *testing.T) {
	inst := services(t, "fault-stats")
	r := newRun(t, inst)
	// The worker builds the stats rollups of the days it writes every
	// second, so builds race the kills and the replays.
	r.extra = append(r.extra, "BOUNCER_ROLLUP_INTERVAL=1s")
	c := r.conn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	phase1, phase2 := statsDataset(12000)
	conn := consumer.Conn{Brokers: []string{inst.brokers}}
	if err := consumer.EnsureTopic(ctx, conn, r.topic, 4); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(inst.brokers), Topic: r.topic, Balancer: &kafka.Hash{},
		BatchSize: 1000, BatchTimeout: 20 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	produced := 0
	send := func(events []statsEvent) {
		t.Helper()
		msgs := make([]kafka.Message, 0, len(events)+1)
		for _, e := range events {
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Key: []byte(e.Email), Value: b})
		}
		// Bad input rides along: dead-lettered, never counted.
		msgs = append(msgs, kafka.Message{Key: []byte("junk"), Value: []byte(`{"event":"processed","email":`)})
		for i := 0; i < len(msgs); i += 2000 {
			if err := w.WriteMessages(ctx, msgs[i:min(i+2000, len(msgs))]...); err != nil {
				t.Fatal(err)
			}
		}
		produced += len(msgs)
	}
	// Every 20th event of phase one is resent later, and every 4th of
	// phase two: the same JSON at new offsets.
	var replay1, replay2 []statsEvent
	for i, e := range phase1 {
		if i%20 == 7 {
			replay1 = append(replay1, e)
		}
	}
	for i, e := range phase2 {
		if i%4 == 1 {
			replay2 = append(replay2, e)
		}
	}

	send(phase1[:len(phase1)/2])
	worker := r.startWorker("worker")
	at := r.progressing(c, 0, 4000)
	worker.Process.Kill()
	t.Logf("kill -9 #1 with %d rows stored", at)
	send(phase1[len(phase1)/2:])
	send(replay1)
	worker = r.startWorker("worker")
	at = r.progressing(c, at, 6000)
	worker.Process.Kill()
	t.Logf("kill -9 #2 with %d rows stored", at)
	worker = r.startWorker("worker")
	r.waitStored(c, uint64(produced), 5*time.Minute)

	// Phase two once phase one is stored, so every list entry exists.
	send(phase2)
	worker.Process.Kill()
	t.Logf("kill -9 #3 right after phase two was produced")
	send(replay2)
	worker = r.startWorker("worker")
	r.waitStored(c, uint64(produced), 5*time.Minute)

	onList := map[string]string{}
	for _, e := range phase1 {
		switch {
		case e.Event == "bounce" && e.Status == "5.1.1":
			onList[e.Account+"/"+e.Email] = "Bounced Address"
		case e.Event == "spamreport":
			onList[e.Account+"/"+e.Email] = "Spam Reporting Address"
		case e.Event == "unsubscribe":
			onList[e.Account+"/"+e.Email] = "Unsubscribed Address"
		}
	}
	isPhase2 := map[string]bool{}
	for _, e := range phase2 {
		isPhase2[e.ID] = true
	}
	dropReason := func(e statsEvent) string {
		if !isPhase2[e.ID] {
			return ""
		}
		return onList[e.Account+"/"+e.Email]
	}
	all := append(append(append(append([]statsEvent(nil), phase1...), replay1...), phase2...), replay2...)
	want := expectedStats(all, dropReason)
	// Derived dropped rows: one per stored phase-two processed row to a
	// listed recipient (resends included); wait for them too.
	derived := 0
	for _, e := range append(append([]statsEvent(nil), phase2...), replay2...) {
		if dropReason(e) != "" {
			derived++
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := r.count(c, "SELECT count() FROM DB.events WHERE derived = 1")
		if err == nil && n == uint64(derived) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("derived dropped rows: %d (err %v), want %d; worker logs in %s", n, err, derived, r.logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// While the worker still runs, whatever mix of rollups and events the
	// days are read from, the answers are the events table's.
	bouncer := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = r.env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bouncer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Logf("acme's days after the kills:\n%s", bouncer("rollups", "status", "--from", "2026-11-02", "--to", "2026-11-06", "--account", "acme"))
	r.compareStats(ctx, "after the kills")
	stopGracefully(t, worker)
	t.Logf("bouncer rollups update:\n%s", bouncer("rollups", "update"))
	// Now every day is read from the rollups.
	for _, acct := range []string{"acme", "globex"} {
		out := string(bouncer("rollups", "status", "--from", "2026-11-02", "--to", "2026-11-06", "--account", acct))
		if strings.Count(out, " rollups\n") != 5 {
			t.Errorf("%s: want every day from the rollups:\n%s", acct, out)
		}
	}
	r.compareStats(ctx, "built")

	for _, acct := range []string{"acme", "globex"} {
		got := r.stats(ctx, acct, "day", false)
		if len(got) != 5 {
			t.Fatalf("%s: %d days, want 5: %+v", acct, len(got), got)
		}
		var nonzero int
		for _, d := range got {
			if len(d.Stats) != 1 {
				t.Fatalf("%s %s: %d stats entries", acct, d.Date, len(d.Stats))
			}
			metrics := map[string]bool{}
			for k := range d.Stats[0].Metrics {
				metrics[k] = true
			}
			for k := range want[acct][d.Date] {
				metrics[k] = true
			}
			names := make([]string, 0, len(metrics))
			for k := range metrics {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				g, w := d.Stats[0].Metrics[k], want[acct][d.Date][k]
				if g != w {
					t.Errorf("%s %s %s = %d, want %d (computed from the produced events)", acct, d.Date, k, g, w)
				}
				if w != 0 {
					nonzero++
				}
			}
		}
		t.Logf("%s: %d non-zero day metrics agree, e.g. %s: %v", acct, nonzero, got[0].Date, got[0].Stats[0].Metrics)
		if nonzero < 30 {
			t.Errorf("%s: only %d non-zero metrics: the dataset does not exercise the stats", acct, nonzero)
		}
	}
}

// dayStats is bouncer stats --json's answer.
type dayStats []struct {
	Date  string `json:"date"`
	Stats []struct {
		Name    string            `json:"name"`
		Metrics map[string]uint64 `json:"metrics"`
	} `json:"stats"`
}

// stats runs bouncer stats --json over the test's five days, from the
// rollups where they cover a day or (exact) from the events table alone.
func (r *run) stats(ctx context.Context, acct, by string, exact bool, more ...string) dayStats {
	r.t.Helper()
	args := []string{"stats", "--json", "--all", "--by", by, "--start", "2026-11-02", "--end", "2026-11-06", "--account", acct}
	if exact {
		args = append(args, "--exact")
	}
	args = append(args, more...)
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = r.env()
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("bouncer %s: %v", strings.Join(args, " "), err)
	}
	var got dayStats
	if err := json.Unmarshal(out, &got); err != nil {
		r.t.Fatalf("bouncer stats --json: %v\n%s", err, out)
	}
	return got
}

// compareStats checks every metric of every period, by day and by week,
// both ways: bouncer stats (rollups where a build covers the day) and
// bouncer stats --exact (the events table).
func (r *run) compareStats(ctx context.Context, when string) {
	r.t.Helper()
	compared := 0
	for _, acct := range []string{"acme", "globex"} {
		for _, by := range []string{"day", "week"} {
			got, exact := r.stats(ctx, acct, by, false), r.stats(ctx, acct, by, true)
			if len(got) != len(exact) || len(got) == 0 {
				r.t.Errorf("%s, %s by %s: %d periods from the rollups, %d from the events table", when, acct, by, len(got), len(exact))
				continue
			}
			for i := range got {
				g, e := got[i], exact[i]
				if g.Date != e.Date || len(g.Stats) != 1 || len(e.Stats) != 1 {
					r.t.Errorf("%s, %s by %s: period %s vs %s", when, acct, by, g.Date, e.Date)
					continue
				}
				for k, v := range e.Stats[0].Metrics {
					if g.Stats[0].Metrics[k] != v {
						r.t.Errorf("%s, %s %s (by %s) %s: %d from the rollups, %d from the events table", when, acct, g.Date, by, k, g.Stats[0].Metrics[k], v)
					}
					compared++
				}
				if len(g.Stats[0].Metrics) != len(e.Stats[0].Metrics) {
					r.t.Errorf("%s, %s %s: metrics %v vs %v", when, acct, g.Date, g.Stats[0].Metrics, e.Stats[0].Metrics)
				}
			}
		}
	}
	// The user agent dimensions (browsers count clicks, clients and
	// devices opens), every key of every day, both ways.
	keys := 0
	for _, acct := range []string{"acme", "globex"} {
		for _, seg := range []string{"browser", "client", "device"} {
			got, exact := r.stats(ctx, acct, "day", false, "--segment", seg), r.stats(ctx, acct, "day", true, "--segment", seg)
			if len(got) != len(exact) || len(got) == 0 {
				r.t.Errorf("%s, %s %s: %d days from the rollups, %d from the events table", when, acct, seg, len(got), len(exact))
				continue
			}
			for i := range got {
				g, e := got[i], exact[i]
				if g.Date != e.Date || len(g.Stats) != len(e.Stats) {
					r.t.Errorf("%s, %s %s %s: %d keys from the rollups, %d from the events table", when, acct, seg, g.Date, len(g.Stats), len(e.Stats))
					continue
				}
				for j := range g.Stats {
					if g.Stats[j].Name != e.Stats[j].Name || !maps.Equal(g.Stats[j].Metrics, e.Stats[j].Metrics) {
						r.t.Errorf("%s, %s %s %s: %s %v from the rollups, %s %v from the events table", when, acct, seg, g.Date,
							g.Stats[j].Name, g.Stats[j].Metrics, e.Stats[j].Name, e.Stats[j].Metrics)
					}
					keys++
				}
			}
		}
	}
	if keys == 0 {
		r.t.Errorf("%s: no browser, client or device keys (the dataset's opens and clicks have user agents)", when)
	}
	r.t.Logf("%s: %d metrics and %d user agent keys agree between the rollups and the events table", when, compared, keys)
}
