package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/internal/eventgen"
	"github.com/bouncer-mail/bouncer/internal/progress"
	"github.com/bouncer-mail/bouncer/schemas"
)

func init() {
	register("produce", "produce delivery events to Kafka: a realistic generated stream, or JSON lines from a file", runProduce)
}

func runProduce(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "produce")
	e := &envFlags{fs: fs, getenv: env.getenv}
	kf := addKafkaFlags(e)
	count := fs.Int("count", 10000, "messages to produce (generated mode)")
	rate := fs.Int("rate", 0, "messages per second; 0 is as fast as Kafka takes them")
	batch := fs.Int("batch", 1, "events per message: 1 sends single objects, more sends SendGrid's JSON array form")
	seed := fs.Uint64("seed", 1, "random seed of the generated stream (same seed, same events)")
	accounts := fs.String("accounts", "", "comma-separated account_ids to spread events over (empty: the default account)")
	since := fs.Duration("since", 0, "spread the generated events' timestamps evenly from this long ago until now, e.g. 336h for two weeks (0: a fixed stream from 2025-11-27 00:00 UTC, 50 events a second)")
	badEvery := fs.Int("bad-every", 0, "make every Nth message bad input, to see dead letters (0: never)")
	file := fs.String("file", "", "send the lines of this file (- for stdin) instead of generating")
	partitions := fs.Int("partitions", 4, "partitions when the topic has to be created")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	partitionBy := fs.String("partition-by", "key", "key: kafka-go's hash of the message key (the recipient address as written; file lines have none); recipient: bouncer's partition of the recipient (murmur2 of account_id and normalised address, consumer.PartitionOf), the partitioning workers' suppression slices follow (docs/scaling.md)")
	retryFor := fs.Duration("retry-for", 2*time.Minute, "keep resending messages a broker did not take (a leader that died and is being replaced) for this long before giving up")
	if err := parseFlags(fs, env, args); err != nil {
		return err
	}
	if err := e.err(); err != nil {
		return err
	}
	switch {
	case *count < 0:
		return usagef("--count %d: want 0 or more", *count)
	case *rate < 0:
		return usagef("--rate %d: want 0 (unlimited) or more", *rate)
	case *batch < 1 || *batch > 10000:
		return usagef("--batch %d: want 1 to 10000", *batch)
	case *badEvery < 0:
		return usagef("--bad-every %d: want 0 (never) or more", *badEvery)
	case *retryFor < 0:
		return usagef("--retry-for %s: want 0 (no retries beyond kafka-go's own) or more", *retryFor)
	case *since < 0:
		return usagef("--since %s: want 0 or a duration before now, such as 336h", *since)
	case *partitionBy != "key" && *partitionBy != "recipient":
		return usagef("--partition-by %q: want key or recipient", *partitionBy)
	case fs.NArg() > 0:
		return usagef("produce takes no arguments; got %q", fs.Args())
	}
	conn := kf.conn()
	if err := conn.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	if err := consumer.EnsureTopic(ctx, conn, *kf.topic, *partitions); err != nil {
		return err
	}
	w, err := consumer.NewWriter(conn, *kf.topic, consumer.WriterConfig{BatchSize: 2000, BatchBytes: 1 << 20, BatchTimeout: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer w.Close()

	var next func() (kafka.Message, bool, error)
	total := int64(*count)
	if *file != "" {
		total = -1
		var in io.Reader = env.stdin
		if *file != "-" {
			f, err := os.Open(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		r := bufio.NewReaderSize(in, 1<<20)
		next = func() (kafka.Message, bool, error) {
			for {
				line, err := r.ReadBytes('\n')
				line = bytes.TrimRight(line, "\r\n")
				if len(line) > 0 {
					return kafka.Message{Value: line}, true, nil
				}
				if err == io.EOF {
					return kafka.Message{}, false, nil
				}
				if err != nil {
					return kafka.Message{}, false, err
				}
			}
		}
	} else {
		gen := eventgen.New(*seed)
		gen.Accounts = splitList(*accounts)
		if *since > 0 {
			gen.BaseTime = time.Now().Add(-*since).Unix()
			gen.Step = *since / time.Duration(max(*count**batch, 1))
		}
		made := 0
		next = func() (kafka.Message, bool, error) {
			if made >= *count {
				return kafka.Message{}, false, nil
			}
			made++
			if *badEvery > 0 && made%*badEvery == 0 {
				return kafka.Message{Key: []byte("bad"), Value: eventgen.Bad(made / *badEvery)}, true, nil
			}
			v := gen.Message(nil, *batch)
			return kafka.Message{Key: eventgen.RecipientKey(v), Value: v}, true, nil
		}
	}

	if *partitionBy == "recipient" {
		// The key becomes account_id NUL normalised address, which the
		// Java client's murmur2 puts where consumer.PartitionOf says.
		w.Balancer = &kafka.Murmur2Balancer{}
		gen := next
		next = func() (kafka.Message, bool, error) {
			m, ok, err := gen()
			if ok && err == nil {
				m.Key = recipientPartitionKey(m.Value)
			}
			return m, ok, err
		}
	}
	retryNote := func(failed, of int, err error, wait time.Duration) {
		fmt.Fprintf(env.stderr, "bouncer: %d of %d messages not written (%v); resending in %s\n", failed, of, err, wait.Round(time.Millisecond))
	}
	bar := progress.New(env.stderr, progress.Config{Label: "producing", Unit: "msg", Total: total, Mode: progress.ModeFor(env.stderr, *quiet)})
	start := time.Now()
	sent := 0
	chunk := 1000
	if *rate > 0 {
		chunk = max(1, min(1000, *rate/20))
	}
	msgs := make([]kafka.Message, 0, chunk)
	for done := false; !done; {
		msgs = msgs[:0]
		for len(msgs) < chunk {
			m, ok, err := next()
			if err != nil {
				return fmt.Errorf("read input: %w", err)
			}
			if !ok {
				done = true
				break
			}
			msgs = append(msgs, m)
		}
		if len(msgs) == 0 {
			break
		}
		if err := consumer.WriteRetrying(ctx, w, msgs, *retryFor, retryNote); err != nil {
			return fmt.Errorf("produce to %s after %d messages: %w", *kf.topic, sent, consumer.ShortWriteError(err))
		}
		sent += len(msgs)
		bar.Add(int64(len(msgs)))
		if *rate > 0 {
			// Pace: where the sent count should be by now.
			due := start.Add(time.Duration(float64(sent) / float64(*rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 && !consumer.Sleep(ctx, d) {
				return ctx.Err()
			}
		}
	}
	bar.Finish()
	elapsed := time.Since(start)
	fmt.Fprintf(env.stdout, "produced %d messages to %s in %s (%.0f msg/s)\n", sent, *kf.topic, elapsed.Round(time.Millisecond), float64(sent)/max(elapsed.Seconds(), 1e-9))
	return nil
}

// recipientPartitionKey is the key consumer.PartitionOf hashes for the
// (first) event of a message: its account_id (the default account when
// absent) and normalised address; nil when the message has none (bad
// input lands anywhere).
func recipientPartitionKey(v []byte) []byte {
	var ev struct {
		AccountID string `json:"account_id"`
		Email     string `json:"email"`
	}
	if len(v) > 0 && v[0] == '[' {
		var evs []json.RawMessage
		if json.Unmarshal(v, &evs) != nil || len(evs) == 0 {
			return nil
		}
		v = evs[0]
	}
	if json.Unmarshal(v, &ev) != nil {
		return nil
	}
	norm, ok := schemas.NormalizeAddress(ev.Email)
	if !ok {
		return nil
	}
	return []byte(cmp.Or(ev.AccountID, schemas.DefaultAccountID) + "\x00" + norm)
}
