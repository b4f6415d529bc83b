package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/apitest"
	"github.com/bouncer-mail/bouncer/internal/testenv"
)

// syncBuffer collects a command's output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := m[k]; ok || k != "BOUNCER_API_OPS_ADDR" {
			return v
		}
		// Tests run many apis at once: never on the fixed default ops port.
		return "127.0.0.1:0"
	}
}

// startWorker runs `bouncer worker` in-process until the returned stop is
// called; stop reports run's error.
func startWorker(t *testing.T, env map[string]string) (stop func() error, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bouncer", "worker"}, envFunc(env), strings.NewReader(""), logs, logs)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("worker did not stop within 60s")
			}
		})
		return err
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
	return stop, logs
}

func produceRaw(t *testing.T, brokers, topic string, values ...[]byte) {
	t.Helper()
	produceKeyed(t, brokers, topic, "", values...)
}

// produceKeyed writes values with one key (all to one partition, as a
// producer keying by recipient does), or keys k0, k1, ... when key is "".
func produceKeyed(t *testing.T, brokers, topic, key string, values ...[]byte) {
	t.Helper()
	w, err := consumer.NewWriter(consumer.Conn{Brokers: testenv.Brokers(brokers)}, topic, consumer.WriterConfig{BatchTimeout: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		k := key
		if k == "" {
			k = fmt.Sprintf("k%d", i)
		}
		msgs[i] = kafka.Message{Key: []byte(k), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func queryInt(t *testing.T, conn driver.Conn, q string) uint64 {
	t.Helper()
	n, err := tryQueryInt(conn, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func tryQueryInt(conn driver.Conn, q string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(context.Background(), q).Scan(&n)
	return n, err
}

// waitFor polls cond until it holds (apitest.WaitFor).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	apitest.WaitFor(t, what, timeout, cond)
}

func TestWorkerEndToEnd(t *testing.T) {
	brokers := testenv.Kafka(t)
	addr := testenv.ClickHouse(t)
	topic := testenv.Topic(t, brokers, 3)
	db := testenv.Database(t, addr)
	ch := testenv.Open(t, addr, db)
	env := map[string]string{
		"KAFKA_BROKERS": brokers, "CLICKHOUSE_ADDR": addr, "CLICKHOUSE_DATABASE": db,
		"BOUNCER_TOPIC": topic, "BOUNCER_SINK_GROUP": topic + ".sink", "BOUNCER_OPS_ADDR": "127.0.0.1:0",
		"BOUNCER_MAX_WAIT": "50ms", "BOUNCER_MAX_MESSAGE_BYTES": "4096",
		"BOUNCER_CHANGELOG_TOPIC": topic + ".suppressions",
	}

	good := [][]byte{
		[]byte(`{"event":"processed","email":"Kim@Example.com","timestamp":1764201600,"sg_event_id":"e1","category":["a","b"],"campaign":"fall"}`),
		[]byte(`{"event":"delivered","email":"kim@example.com","timestamp":1764201601,"sg_event_id":"e2","response":"250 OK","attempt":"1"}`),
		[]byte(`{"event":"bounce","email":"gone@gmail.com","timestamp":1764201602,"sg_event_id":"e3","type":"bounce","status":"5.1.1","reason":"550 5.1.1 The email account that you tried to reach does not exist. - gsmtp","account_id":"acme"}`),
		[]byte(`{"event":"bounce","email":"full@gmail.com","timestamp":1764201603,"type":"bounce","reason":"552 5.2.2 The email account that you tried to reach is over quota. - gsmtp"}`),
		// A plausible but invalid address is stored, not dead-lettered.
		[]byte(`{"event":"bounce","email":"a..b@example.com","timestamp":1764201604,"sg_event_id":"e5","reason":"553 5.1.3 bad address syntax"}`),
		// SendGrid's batch form.
		[]byte(`[{"event":"open","email":"x@example.org","timestamp":1764201605,"sg_event_id":"e6"},{"event":"click","email":"x@example.org","timestamp":1764201606,"sg_event_id":"e7","url":"https://example.org"}]`),
	}
	// Two disabled-mailbox bounces 25 hours apart, keyed by recipient like
	// a real producer: the soft-bounce policy puts the recipient on the
	// bounce list.
	produceKeyed(t, brokers, topic, "dis@yahoo.com",
		[]byte(`{"event":"bounce","email":"dis@yahoo.com","timestamp":1764100000,"reason":"554 30 Sorry, your message to dis@yahoo.com cannot be delivered. This mailbox is disabled (554.30)."}`),
		[]byte(`{"event":"bounce","email":"dis@yahoo.com","timestamp":1764190000,"reason":"554 30 Sorry, your message to dis@yahoo.com cannot be delivered. This mailbox is disabled (554.30)."}`))
	const goodEvents = 9 // 7 above and the two disabled-mailbox bounces
	bad := map[string][]byte{
		"invalid_json":      []byte(`{"event":"bounce",`),
		"wrong_type":        []byte(`{"event":"delivered","email":"x@example.com","timestamp":"soon"}`),
		"missing_field":     []byte(`{"event":"delivered","timestamp":1764201600}`),
		"unknown_event":     []byte(`{"event":"exploded","email":"x@example.com","timestamp":1764201600}`),
		"invalid_email":     []byte(`{"event":"delivered","email":"nobody","timestamp":1764201600}`),
		"non_utf8":          []byte("{\"event\":\"delivered\",\"email\":\"x@example.com\",\"timestamp\":1764201600,\"subject\":\"\xff\"}"),
		"oversize":          []byte(`{"event":"delivered","email":"x@example.com","timestamp":1764201600,"subject":"` + strings.Repeat("x", 5000) + `"}`),
		"empty":             []byte(``),
		"duplicate_key":     []byte(`{"event":"delivered","email":"x@example.com","email":"y@example.com","timestamp":1764201600}`),
		"invalid_timestamp": []byte(`{"event":"delivered","email":"x@example.com","timestamp":-5}`),
	}
	// An array with one bad element: two events stored, one dead letter.
	mixed := []byte(`[{"event":"delivered","email":"m1@example.com","timestamp":1764201610,"sg_event_id":"m1"},{"event":"delivered","timestamp":1764201611},{"event":"delivered","email":"m3@example.com","timestamp":1764201612,"sg_event_id":"m3"}]`)

	var values [][]byte
	values = append(values, good...)
	for _, v := range bad {
		values = append(values, v)
	}
	values = append(values, mixed)
	produceRaw(t, brokers, topic, values...)
	wantEvents := uint64(goodEvents + 2)
	wantDead := uint64(len(bad) + 1)

	stop, logs := startWorker(t, env)
	waitFor(t, "all events and dead letters stored", 90*time.Second, func() (bool, string) {
		ev, err1 := tryQueryInt(ch, "SELECT count() FROM events")
		dl, err2 := tryQueryInt(ch, "SELECT count() FROM dead_letters")
		if err := errors.Join(err1, err2); err != nil {
			return false, err.Error()
		}
		return ev == wantEvents && dl == wantDead, fmt.Sprintf("events %d/%d, dead letters %d/%d", ev, wantEvents, dl, wantDead)
	})
	checkOps(t, logs.String(), wantEvents)
	if err := stop(); err != nil {
		t.Fatalf("worker: %v\n%s", err, logs)
	}
	if !strings.Contains(logs.String(), "worker stopped") {
		t.Errorf("no graceful stop in the log:\n%s", logs)
	}

	if n := queryInt(t, ch, "SELECT uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM events"); n != wantEvents {
		t.Errorf("distinct identities %d, want %d", n, wantEvents)
	}
	for code := range bad {
		if n := queryInt(t, ch, "SELECT count() FROM dead_letters WHERE code = '"+code+"'"); n < 1 {
			t.Errorf("no dead letter with code %s", code)
		}
	}
	if n := queryInt(t, ch, "SELECT count() FROM dead_letters WHERE code = 'missing_field' AND msg_index = 1"); n != 1 {
		t.Errorf("the array's bad element: %d dead letters at index 1, want 1", n)
	}
	if n := queryInt(t, ch, "SELECT count() FROM dead_letters WHERE raw = '{\"event\":\"exploded\",\"email\":\"x@example.com\",\"timestamp\":1764201600}'"); n != 1 {
		t.Errorf("dead letter raw bytes not kept verbatim")
	}
	// Enrichment and classification.
	if n := queryInt(t, ch, "SELECT count() FROM events WHERE sg_event_id = 'e3' AND bounce_type = 'hard' AND reason_code = 'user_unknown' AND bounce_classification = 'Invalid Address' AND provider = 'google' AND account_id = 'acme'"); n != 1 {
		t.Errorf("hard bounce row not classified as expected")
	}
	if n := queryInt(t, ch, "SELECT count() FROM events WHERE email = 'full@gmail.com' AND bounce_type = 'soft' AND reason_code = 'mailbox_full' AND event_id_derived = 1 AND startsWith(sg_event_id, 'bnc1_')"); n != 1 {
		t.Errorf("soft bounce row or derived event id not as expected")
	}
	if n := queryInt(t, ch, "SELECT count() FROM events WHERE sg_event_id = 'e1' AND email = 'Kim@Example.com' AND email_norm = 'kim@example.com' AND account_id = 'default' AND custom_args = '{\"campaign\":\"fall\"}' AND categories = ['a','b']"); n != 1 {
		t.Errorf("processed row: email normalisation, custom args or categories not stored as expected")
	}
	// Suppression lists.
	if n := queryInt(t, ch, "SELECT count() FROM suppressions WHERE account_id = 'acme' AND list = 'bounces' AND email_norm = 'gone@gmail.com'"); n != 1 {
		t.Errorf("hard bounce not on the acme bounce list")
	}
	if n := queryInt(t, ch, "SELECT count() FROM suppressions WHERE list = 'bounces' AND email_norm = 'full@gmail.com'"); n != 0 {
		t.Errorf("a soft bounce (mailbox full) was suppressed")
	}
	if n := queryInt(t, ch, "SELECT count() FROM suppressions WHERE list = 'invalid_emails' AND email_norm = 'a..b@example.com'"); n != 1 {
		t.Errorf("malformed address not on invalid_emails")
	}
	if n := queryInt(t, ch, "SELECT count() FROM suppressions WHERE list = 'bounces' AND email_norm = 'dis@yahoo.com' AND source = 'policy:mailbox_disabled' AND reason_code = 'mailbox_disabled'"); n < 1 {
		t.Errorf("two disabled-mailbox bounces 25h apart did not put the recipient on the bounce list")
	}

	// The dead-letter topic holds every dead letter, with its coordinates.
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The DLQ topic has several partitions; read them all.
	for p := 0; p < 4; p++ {
		pr := kafka.NewReader(kafka.ReaderConfig{Brokers: testenv.Brokers(brokers), Topic: topic + ".dlq", Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			lag, err := pr.ReadLag(ctx)
			if err != nil || lag == 0 {
				break
			}
			m, err := pr.ReadMessage(ctx)
			if err != nil {
				break
			}
			headers := map[string]string{}
			for _, h := range m.Headers {
				headers[h.Key] = string(h.Value)
			}
			if headers["bouncer-source-topic"] != topic || headers["bouncer-reason"] == "" || headers["bouncer-source-offset"] == "" {
				t.Errorf("dead-letter message headers incomplete: %v", headers)
			}
			seen[string(m.Key)] = true
		}
		pr.Close()
	}
	if uint64(len(seen)) != wantDead {
		t.Errorf("dead-letter topic holds %d distinct dead letters, want %d", len(seen), wantDead)
	}

	// deadletters list shows them.
	var out syncBuffer
	if err := run(context.Background(), []string{"bouncer", "deadletters", "list", "--json", "--code", "oversize"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("deadletters list: %v\n%s", err, out.String())
	}
	if lines := strings.Count(out.String(), "\n"); lines != 1 || !strings.Contains(out.String(), `"code":"oversize"`) {
		t.Errorf("deadletters list --code oversize printed %d lines:\n%s", lines, out.String())
	}

	// A restart resumes: more events arrive, nothing is stored twice. With
	// a larger message limit, the replayed oversize message is accepted.
	env["BOUNCER_MAX_MESSAGE_BYTES"] = "16384"
	// A later processed event to the hard-bounced address of acme: the
	// restarted worker knows the bounce from the change log and adds a
	// derived dropped event. The same address in another account is fine.
	produceRaw(t, brokers, topic, good[0], good[1],
		[]byte(`{"event":"processed","email":"gone@gmail.com","timestamp":1764201700,"sg_event_id":"p9","account_id":"acme"}`),
		[]byte(`{"event":"processed","email":"gone@gmail.com","timestamp":1764201700,"sg_event_id":"p10","account_id":"globex"}`))
	out = syncBuffer{}
	if err := run(context.Background(), []string{"bouncer", "deadletters", "replay", "--code", "oversize"}, envFunc(env), strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("deadletters replay: %v\n%s", err, out.String())
	}
	stop, logs = startWorker(t, env)
	waitFor(t, "events after restart", 90*time.Second, func() (bool, string) {
		ev := queryInt(t, ch, "SELECT count() FROM events")
		return ev == wantEvents+6, fmt.Sprintf("events %d/%d", ev, wantEvents+6)
	})
	if err := stop(); err != nil {
		t.Fatalf("worker: %v\n%s", err, logs)
	}
	if n := queryInt(t, ch, "SELECT uniqExact(kafka_topic, kafka_partition, kafka_offset, msg_index) FROM events"); n != wantEvents+6 {
		t.Errorf("after restart: distinct identities %d, want %d", n, wantEvents+6)
	}
	if n := queryInt(t, ch, "SELECT count() FROM events WHERE event = 'dropped' AND derived = 1 AND account_id = 'acme' AND email_norm = 'gone@gmail.com' AND reason = 'Bounced Address' AND sg_event_id != 'p9'"); n != 1 {
		t.Errorf("derived dropped events for acme's bounced address: %d, want 1", n)
	}
	if n := queryInt(t, ch, "SELECT count() FROM events WHERE event = 'dropped'"); n != 1 {
		t.Errorf("dropped events: %d, want only acme's (globex's address is not suppressed)", n)
	}
	// The change log holds the bounce, keyed by account, list and address.
	keys := readTopicKeys(t, brokers, topic+".suppressions")
	if !keys["acme/bounces/0/gone@gmail.com"] || !keys["default/invalid_emails/0/a..b@example.com"] {
		t.Errorf("change log keys %v lack the bounce or the invalid address", keys)
	}
	if n := queryInt(t, ch, "SELECT count() FROM dead_letters"); n != wantDead {
		t.Errorf("after replay: %d dead letters, want still %d", n, wantDead)
	}
}

func TestWorkerRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad duration", map[string]string{"BOUNCER_MAX_WAIT": "soon"}, nil, "BOUNCER_MAX_WAIT"},
		{"bad integer", map[string]string{"BOUNCER_PARTITIONS": "many"}, nil, "BOUNCER_PARTITIONS"},
		{"bad broker", map[string]string{"KAFKA_BROKERS": "localhost"}, nil, "want host:port"},
		{"bad sasl", map[string]string{"KAFKA_SASL_MECHANISM": "kerberos"}, nil, "SASL mechanism"},
		{"bad database", map[string]string{"CLICKHOUSE_DATABASE": "drop table;"}, nil, "clickhouse database"},
		{"bad log format", nil, []string{"--log-format", "xml"}, "--log-format"},
		{"unknown flag", nil, []string{"--frobnicate"}, "frobnicate"},
		{"stray argument", nil, []string{"now"}, "no arguments"},
		{"negative retention", nil, []string{"--retention-months", "-1"}, "retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			err := run(context.Background(), append([]string{"bouncer", "worker"}, tt.args...), envFunc(tt.env), strings.NewReader(""), &out, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tt.want) {
				t.Fatalf("err = %v, output %q; want mention of %q", err, out.String(), tt.want)
			}
			if exitCode(err) != 2 {
				t.Errorf("exit code %d, want 2 (usage)", exitCode(err))
			}
		})
	}
}

// checkOps reads the ops server's address from the worker's log and checks
// its endpoints.
func checkOps(t *testing.T, logs string, written uint64) {
	t.Helper()
	m := regexp.MustCompile(`ops server listening.*addr=(\S+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no ops address in the log:\n%s", logs)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d %s", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		fmt.Sprintf("bouncer_sink_events_written_total %d", written),
		`bouncer_sink_dead_letters_total{reason="oversize"} 1`,
		"bouncer_sink_insert_seconds_bucket",
		"bouncer_consumer_lag_messages{",
		"bouncer_consumer_last_commit_timestamp_seconds{",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The event topic's 3 partitions and the routed topic's 4 (the change
	// log's count: re-routing is on by default).
	if !regexp.MustCompile(`(?m)^bouncer_consumer_assigned_partitions\{group="[^"]+\.sink"\} 7$`).MatchString(body) {
		t.Errorf("/metrics lacks the sink group's 7 assigned partitions (3 of the event topic, 4 routed)")
	}
}

// readTopicKeys reads every partition of a topic to its end.
func readTopicKeys(t *testing.T, brokers, topic string) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", testenv.Brokers(brokers)[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	for _, part := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: testenv.Brokers(brokers), Topic: topic, Partition: part.ID, MaxWait: 100 * time.Millisecond})
		for {
			lag, err := r.ReadLag(ctx)
			if err != nil || lag == 0 {
				break
			}
			m, err := r.ReadMessage(ctx)
			if err != nil {
				break
			}
			keys[string(m.Key)] = true
		}
		r.Close()
	}
	return keys
}
