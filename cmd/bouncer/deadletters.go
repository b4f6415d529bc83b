package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

func init() {
	register("deadletters", "list bad input that was dead-lettered, or replay it into a topic", runDeadLetters)
}

func runDeadLetters(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay" && args[0] != "--help" && args[0] != "-h") {
		return usagef("deadletters: want list or replay (see bouncer deadletters --help)")
	}
	sub := args[0]
	fs := newFlagSet(env, "deadletters")
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	cf := addClickHouseFlags(e)
	code := fs.String("code", "", "only dead letters with this reason code")
	limit := fs.Int("limit", 100, "at most this many")
	asJSON := fs.Bool("json", false, "list: one JSON object per line")
	raw := fs.Bool("raw", false, "list: only the rejected bytes, one per line")
	to := fs.String("to", "", "replay: topic to send to (default: each dead letter's source topic)")
	dry := fs.Bool("dry-run", false, "replay: show what would be sent")
	if sub == "--help" || sub == "-h" {
		return parseFlags(fs, env, []string{"--help"})
	}
	if err := parseFlags(fs, env, args[1:]); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	if *limit < 1 {
		return usagef("--limit %d: want at least 1", *limit)
	}
	if *asJSON && *raw {
		return usagef("--json and --raw: pick one")
	}
	store, err := clickhouse.Open(ctx, cf.config())
	if err != nil {
		return err
	}
	defer store.Close()
	dls, err := store.DeadLetters(ctx, *code, *limit)
	if err != nil {
		return err
	}
	if sub == "list" {
		return listDeadLetters(env, dls, *asJSON, *raw)
	}
	return replayDeadLetters(ctx, env, kf, dls, *to, *dry)
}

func listDeadLetters(env *environment, dls []schemas.DeadLetter, asJSON, raw bool) error {
	switch {
	case asJSON:
		enc := json.NewEncoder(env.stdout)
		for _, d := range dls {
			if err := enc.Encode(deadLetterJSON{Topic: d.Topic, Partition: d.Partition, Offset: d.Offset, Index: d.Index, Code: string(d.Code),
				Detail: d.Detail, Raw: string(d.Raw), Key: string(d.Key), IngestedAt: d.IngestedAt}); err != nil {
				return err
			}
		}
	case raw:
		for _, d := range dls {
			if _, err := fmt.Fprintf(env.stdout, "%s\n", d.Raw); err != nil {
				return err
			}
		}
	default:
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOPIC/PARTITION/OFFSET/INDEX\tCODE\tDETAIL\tRAW")
		for _, d := range dls {
			fmt.Fprintf(tw, "%s/%d/%d/%d\t%s\t%s\t%s\n", d.Topic, d.Partition, d.Offset, d.Index, d.Code, clip(d.Detail, 60), clip(strconv.Quote(string(d.Raw)), 50))
		}
		if len(dls) == 0 {
			fmt.Fprintln(tw, "(none)")
		}
		return tw.Flush()
	}
	return nil
}

// deadLetterJSON is a line of deadletters list --json.
type deadLetterJSON struct {
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Index      int       `json:"index"`
	Code       string    `json:"code"`
	Detail     string    `json:"detail"`
	Raw        string    `json:"raw"`
	Key        string    `json:"key"`
	IngestedAt time.Time `json:"ingested_at"`
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func replayDeadLetters(ctx context.Context, env *environment, kf *kafkaFlags, dls []schemas.DeadLetter, to string, dry bool) error {
	if len(dls) == 0 {
		fmt.Fprintln(env.stdout, "nothing to replay")
		return nil
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	byTopic := map[string][]consumer.Replayed{}
	for _, d := range dls {
		topic := to
		if topic == "" {
			topic = d.Topic
		}
		origin := consumer.DeadLetterKey(d)
		byTopic[topic] = append(byTopic[topic], consumer.Replayed{Key: d.Key, Value: d.Raw, Origin: origin, Reason: string(d.Code)})
		if dry {
			fmt.Fprintf(env.stdout, "would send %s (%s, %d bytes) to %s\n", origin, d.Code, len(d.Raw), topic)
		}
	}
	if dry {
		return nil
	}
	for topic, msgs := range byTopic {
		if err := consumer.Replay(ctx, conn, topic, msgs); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "replayed %d dead letters to %s\n", len(msgs), topic)
	}
	return nil
}
