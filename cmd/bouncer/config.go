package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bouncer-mail/bouncer/consumer"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

// knownEnv lists every environment variable a flag reads, for --help and
// for the test that checks docker-compose.yml uses only these names.
var knownEnv = map[string]bool{}

// envFlags binds flags whose defaults come from environment variables.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

func (e *envFlags) usage(u, env string) string {
	knownEnv[env] = true
	return u + " (env " + env + ")"
}

func (e *envFlags) String(name, env, def, usage string) *string {
	if v := e.getenv(env); v != "" {
		def = v
	}
	return e.fs.String(name, def, e.usage(usage, env))
}

func (e *envFlags) Int(name, env string, def int, usage string) *int {
	if v := e.getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("environment %s=%q: want an integer", env, v))
		} else {
			def = n
		}
	}
	return e.fs.Int(name, def, e.usage(usage, env))
}

func (e *envFlags) Bool(name, env string, def bool, usage string) *bool {
	if v := e.getenv(env); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("environment %s=%q: want true or false", env, v))
		} else {
			def = b
		}
	}
	return e.fs.Bool(name, def, e.usage(usage, env))
}

func (e *envFlags) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v := e.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("environment %s=%q: want a duration like 500ms or 30s", env, v))
		} else {
			def = d
		}
	}
	return e.fs.Duration(name, def, e.usage(usage, env))
}

// err reports bad environment values; call after parsing.
func (e *envFlags) err() error {
	if len(e.errs) > 0 {
		return &usageError{e.errs[0].Error()}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// kafkaFlags are the Kafka connection flags every command shares.
type kafkaFlags struct {
	brokers, mechanism, user, password *string
	tls                                *bool
	topic                              *string
	replication                        *int
}

func addKafkaFlags(e *envFlags) *kafkaFlags {
	return &kafkaFlags{
		brokers:   e.String("kafka-brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka bootstrap brokers, host:port[,host:port...]"),
		tls:       e.Bool("kafka-tls", "KAFKA_TLS", false, "connect to Kafka with TLS"),
		mechanism: e.String("kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: no SASL)"),
		user:      e.String("kafka-sasl-username", "KAFKA_SASL_USERNAME", "", "SASL user name"),
		password:  e.String("kafka-sasl-password", "KAFKA_SASL_PASSWORD", "", "SASL password"),
		topic:     e.String("topic", "BOUNCER_TOPIC", "email-events", "Kafka topic of delivery events"),
		replication: e.Int("topic-replication", "BOUNCER_TOPIC_REPLICATION", 0,
			"replication factor of the topics bouncer creates when missing (0: min(3, brokers in the cluster); with 3 or more also min.insync.replicas=2)"),
	}
}

func (k *kafkaFlags) conn() consumer.Conn {
	return consumer.Conn{Brokers: splitList(*k.brokers), TLS: *k.tls, SASLMechanism: *k.mechanism, SASLUsername: *k.user, SASLPassword: *k.password,
		TopicReplication: *k.replication}
}

// clickhouseFlags are the ClickHouse connection flags.
type clickhouseFlags struct {
	addr, database, user, password *string
	cluster, lostReplicas          *string
	tls                            *bool
}

func addClickHouseFlags(e *envFlags) *clickhouseFlags {
	return &clickhouseFlags{
		addr:     e.String("clickhouse-addr", "CLICKHOUSE_ADDR", "127.0.0.1:9000", "ClickHouse native-protocol address, host:port[,host:port...]"),
		database: e.String("clickhouse-database", "CLICKHOUSE_DATABASE", "bouncer", "ClickHouse database (created by migrate)"),
		user:     e.String("clickhouse-user", "CLICKHOUSE_USER", "default", "ClickHouse user"),
		password: e.String("clickhouse-password", "CLICKHOUSE_PASSWORD", "", "ClickHouse password"),
		tls:      e.Bool("clickhouse-tls", "CLICKHOUSE_TLS", false, "connect to ClickHouse with TLS"),
		cluster: e.String("clickhouse-cluster", "CLICKHOUSE_CLUSTER", "",
			"ClickHouse cluster name (remote_servers) of replicated shards; empty for one server (docs/cluster.md)"),
		lostReplicas: e.String("clickhouse-lost-replicas", "CLICKHOUSE_LOST_REPLICAS", "",
			"host:port[,...] of cluster replicas declared lost for good: resume points are read without them (docs/cluster.md)"),
	}
}

func (c *clickhouseFlags) config() clickhouse.Config {
	return clickhouse.Config{Addr: splitList(*c.addr), Database: *c.database, User: *c.user, Password: *c.password, TLS: *c.tls,
		Cluster: *c.cluster, LostReplicas: splitList(*c.lostReplicas)}
}

// logFlags choose the log format and level.
type logFlags struct{ format, level *string }

func addLogFlags(e *envFlags) *logFlags {
	return &logFlags{
		format: e.String("log-format", "BOUNCER_LOG_FORMAT", "text", "log format: text or json"),
		level:  e.String("log-level", "BOUNCER_LOG_LEVEL", "info", "log level: debug, info, warn or error"),
	}
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*l.level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", *l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch *l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", *l.format)
}

// KnownEnv returns the environment variables bouncer reads, sorted.
func KnownEnv() []string {
	out := make([]string, 0, len(knownEnv))
	for k := range knownEnv {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
