// Package clickhouse is bouncer's ClickHouse adapter. It implements the
// store interfaces of the domain packages with their own types, with no
// mapping layer:
//
//   - the sink group's pipeline.Sink (events, dead letters, suppression
//     changes, high-water marks) and pipeline.History;
//   - suppression.Store (lists, delete-all, erasure and its records);
//   - subscription.Store (sealed webhook subscriptions, the delivery log,
//     failed batches) and kafkatier's FailedStore and ReplayStore;
//   - the API's analytics reads (api.Stats, api.Activity,
//     api.DashboardStore, with package analytics' types);
//   - package accounts' things: API keys (api.KeyStore), dashboard sessions
//     (api.SessionStore) and forward_bounce settings (api.ForwardingStore,
//     and forward.Settings for the forwarder);
//
// plus schema migrations (schemas/ddl), retention (RunRetention), the
// readiness ping, the CLI's summary and the tables of bouncer bench. Every statement is in the registry
// (queries*.go).
//
// # Guarantees
//
// Each Write* call sends its rows as one INSERT of one block into one table
// partition (every row of a call carries the same ingest month), so ClickHouse
// stores it as one part: all rows or none. A failed insert is never re-sent
// from the same batch; the caller re-reads the high-water marks and writes
// again. Works with ClickHouse 18.16 and current releases over the native
// protocol (the HTTP protocol of clickhouse-go does not work with 18.16).
// Versioned rows (suppressions, subscriptions, settings, keys) are read
// newest version first, so concurrent writers converge on the highest
// version. Account-scoped reads take the account as an argument and filter
// by it in SQL.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config says how to reach ClickHouse.
type Config struct {
	// Addr is host:port of the native protocol (default port 9000);
	// several may be given, comma-separated. Required.
	Addr []string
	// Database is created by Migrate if missing. Default "bouncer".
	Database string
	// User and Password; default user "default" with no password.
	User, Password string
	// TLS enables TLS on the native protocol.
	TLS bool
	// DialTimeout bounds connecting; default 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds the wait for the server's next packet of an
	// answer; default 5 minutes (clickhouse-go's). A rollups rebuild of
	// a large account on a busy server may need more.
	ReadTimeout time.Duration
	// InsertTimeout bounds one insert; default 30s. Keep it below the Kafka
	// group's rebalance timeout so a revoked partition's last insert ends
	// before the next owner starts.
	InsertTimeout time.Duration
	// Cluster is the name (in remote_servers) of a cluster of replicated
	// shards; empty for one server. Its servers are read from
	// system.clusters; see cluster.go for the layout and the guarantees.
	Cluster string
	// LostReplicas are host:port (as in system.clusters) of replicas an
	// operator declared lost for good: the resume point is read without
	// them. See cluster.go for what that costs.
	LostReplicas []string
	// Now is the clock of ingest dates and times (the partition of every
	// write); default time.Now. Tests set it to write into a given day.
	Now func() time.Time
}

var databaseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Validate fills defaults and reports the first bad field.
func (c *Config) Validate() error {
	if len(c.Addr) == 0 || c.Addr[0] == "" {
		return errors.New("clickhouse address is empty: set CLICKHOUSE_ADDR (host:port of the native protocol, e.g. 127.0.0.1:9000)")
	}
	for _, a := range c.Addr {
		if !strings.Contains(a, ":") {
			return fmt.Errorf("clickhouse address %q: want host:port", a)
		}
	}
	if c.Database == "" {
		c.Database = "bouncer"
	}
	if !databaseName.MatchString(c.Database) {
		return fmt.Errorf("clickhouse database %q: use letters, digits and _", c.Database)
	}
	if c.User == "" {
		c.User = "default"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.Cluster != "" && !databaseName.MatchString(c.Cluster) {
		return fmt.Errorf("clickhouse cluster %q: use the remote_servers name (letters, digits and _)", c.Cluster)
	}
	if c.InsertTimeout <= 0 {
		c.InsertTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Store is a connection pool to bouncer's database.
type Store struct {
	cfg     Config
	conn    driver.Conn
	cluster *clusterState // nil on one server
	// groupMu serialises this process's unsubscribe group creates, so
	// only creates of other processes can race for an id (groups.go).
	groupMu sync.Mutex
	// groupLog, when set, orders group creates of all processes.
	groupLog GroupLog
	w        writers // the sink's merged inserts (groupcommit.go), made on first use
	// planned, when set (tests), runs after a stats read chose its days'
	// builds and before it reads them.
	planned func()
	// activityRead, when set (tests), runs after an activity read by time
	// windows and before it checks the marks again.
	activityRead func()
}

func (c Config) options(database string) *ch.Options {
	o := &ch.Options{
		Addr:        c.Addr,
		Auth:        ch.Auth{Database: database, Username: c.User, Password: c.Password},
		DialTimeout: c.DialTimeout,
		ReadTimeout: c.ReadTimeout,
		Protocol:    ch.Native,
		// ClickHouse 18.16 rejects settings it does not know.
		Settings: ch.Settings{},
		// Each partition's batch may run three inserts at once.
		MaxOpenConns:    16,
		MaxIdleConns:    8,
		ConnMaxLifetime: time.Hour,
		// Each connection keeps its send buffer; a block is sent in pieces
		// of about this size (the default, 10 MiB, is held by every idle
		// connection).
		MaxCompressionBuffer: 1 << 20,
	}
	if c.Cluster != "" {
		// Writes through Distributed tables return once every shard holds
		// its rows (never queued for later).
		o.Settings["insert_distributed_sync"] = 1
	}
	if c.TLS {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o
}

// Open connects to the configured database, which must exist (Migrate
// creates it).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := ch.Open(cfg.options(cfg.Database))
	if err != nil {
		return nil, fmt.Errorf("open clickhouse %s: %w", strings.Join(cfg.Addr, ","), err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := conn.Ping(pingCtx); err != nil {
		conn.Close()
		var ex *ch.Exception
		if errors.As(err, &ex) && ex.Code == 81 {
			return nil, fmt.Errorf("clickhouse database %q does not exist: run `bouncer migrate` first", cfg.Database)
		}
		return nil, fmt.Errorf("connect to clickhouse %s: %w (is it running? set CLICKHOUSE_ADDR or --clickhouse-addr to its native-protocol host:port)", strings.Join(cfg.Addr, ","), err)
	}
	s := &Store{cfg: cfg, conn: conn}
	if cfg.Cluster != "" {
		if err := s.openCluster(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close closes the pool.
func (s *Store) Close() error {
	if s.cluster != nil {
		s.cluster.close()
	}
	return s.conn.Close()
}

// Conn exposes the driver connection for the query registry tests and
// read-only tools.
func (s *Store) Conn() driver.Conn { return s.conn }

// Ping checks that ClickHouse answers (a readiness check).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// Database is the database name the store uses.
func (s *Store) Database() string { return s.cfg.Database }
