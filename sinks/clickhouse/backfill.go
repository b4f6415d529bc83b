package clickhouse

import (
	"context"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/bouncer-mail/bouncer/suppression"
)

// BackfillOptions select what BackfillAgents fills.
type BackfillOptions struct {
	// From and To bound the events' days, [From, To) (UTC).
	From, To time.Time
	// Account, when set, fills only that account's events.
	Account string
	// ChunkDays is the number of days one mutation covers; default 7.
	ChunkDays int
	// Agent classifies a user agent (enrich.Agents); required.
	Agent func(ua string) (browser, client, device string)
	// Place places an ip (enrich.Geo); nil leaves the places as they are.
	Place func(ip string) (country, region string)
	// Wait is the longest one chunk's mutation may take; default 1h.
	Wait time.Duration
	// Progress, when set, is called after each chunk with the chunks done
	// and planned, the chunk's days, and the distinct user agents and ips
	// it classified.
	Progress func(done, total int, from, to time.Time, agents, places int, took time.Duration)
}

// maxBackfillValues is the most distinct user agents (or ips) one chunk
// may hold: they travel in the mutation's text.
const maxBackfillValues = 100_000

// BackfillAgents fills the user agent and place columns (migration 0018)
// of the open and click events stored before they existed, chunk by chunk
// of days: it reads the chunk's distinct user agents and ips whose columns
// are empty, classifies them here (o.Agent, o.Place), writes them with one
// ALTER TABLE events UPDATE per chunk, waits for it, and rebuilds the
// chunk's rollups. Running it again only finds what is still empty.
func (s *Store) BackfillAgents(ctx context.Context, o BackfillOptions) (int, error) {
	if o.Agent == nil {
		return 0, fmt.Errorf("backfill: BackfillOptions.Agent is required")
	}
	if o.ChunkDays <= 0 {
		o.ChunkDays = 7
	}
	if o.Wait <= 0 {
		o.Wait = time.Hour
	}
	all := b2u(o.Account == "")
	total := (int(o.To.Sub(o.From).Hours()/24) + o.ChunkDays - 1) / o.ChunkDays
	done := 0
	for a := o.From; a.Before(o.To); a = a.AddDate(0, 0, o.ChunkDays) {
		start := time.Now()
		b := a.AddDate(0, 0, o.ChunkDays)
		if b.After(o.To) {
			b = o.To
		}
		args := []any{unixSeconds(a), unixSeconds(b), all, o.Account}
		var uas, ips []string
		if err := collect(ctx, s.conn, qBackfillAgents, &uas, args...); err != nil {
			return done, err
		}
		if o.Place != nil {
			if err := collect(ctx, s.conn, qBackfillPlaces, &ips, args...); err != nil {
				return done, err
			}
		}
		if len(uas) > maxBackfillValues || len(ips) > maxBackfillValues {
			return done, fmt.Errorf("backfill %s: more than %d distinct user agents or ips in %d days: use fewer days per chunk (--chunk-days)",
				a.Format(time.DateOnly), maxBackfillValues, o.ChunkDays)
		}
		if len(uas)+len(ips) > 0 {
			browsers, clients, devices := make([]string, len(uas)), make([]string, len(uas)), make([]string, len(uas))
			for i, ua := range uas {
				browsers[i], clients[i], devices[i] = o.Agent(ua)
			}
			countries, regions := make([]string, len(ips)), make([]string, len(ips))
			for i, ip := range ips {
				countries[i], regions[i] = o.Place(ip)
			}
			// transform() wants non-empty arrays: '' maps to '' (rows
			// without a user agent or ip keep their empty columns).
			pad := func(v []string) []string { return append(v, "") }
			uas, ips = pad(uas), pad(ips)
			browsers, clients, devices, countries, regions = pad(browsers), pad(clients), pad(devices), pad(countries), pad(regions)
			mctx := ch.Context(ctx, ch.WithSettings(ch.Settings{"max_query_size": 256 << 20}))
			err := s.conn.Exec(mctx, s.mutationSQL(qBackfillUpdate, "events"),
				uas, browsers, uas, clients, uas, devices, ips, countries, ips, regions, unixSeconds(a), unixSeconds(b), all, o.Account)
			if err != nil {
				return done, fmt.Errorf("%s: %w", qBackfillUpdate.Name, err)
			}
			if err := s.waitMutations(ctx, "events", suppression.EraseOptions{Wait: o.Wait, Poll: 200 * time.Millisecond}); err != nil {
				return done, fmt.Errorf("backfill %s: %w", a.Format(time.DateOnly), err)
			}
			if _, err := s.RebuildRollups(ctx, RollupOptions{From: a, To: b, Account: o.Account}); err != nil {
				return done, err
			}
		}
		done++
		if o.Progress != nil {
			o.Progress(done, total, a, b, max(len(uas)-1, 0), max(len(ips)-1, 0), time.Since(start))
		}
	}
	return done, nil
}

const backfillWhere = "WHERE timestamp >= toDateTime(?) AND timestamp < toDateTime(?) AND (? = 1 OR account_id = ?) AND event IN ('open', 'click')"

var (
	// The distinct user agents of a chunk's opens and clicks that are not
	// classified yet. Arguments: from, to (unix seconds), every account
	// (1) or one (0), the account.
	qBackfillAgents = register(Query{Name: "events.backfill.agents",
		SQL:    "SELECT DISTINCT useragent FROM events " + backfillWhere + " AND useragent != '' AND ua_browser = '' LIMIT 100001",
		Sample: []any{uint32(1764201600), uint32(1764288000), uint8(1), ""}})
	// The same for ips not placed yet.
	qBackfillPlaces = register(Query{Name: "events.backfill.places",
		SQL:    "SELECT DISTINCT ip FROM events " + backfillWhere + " AND ip != '' AND geo_country = '' LIMIT 100001",
		Sample: []any{uint32(1764201600), uint32(1764288000), uint8(1), ""}})
	// The mutation that writes them. Arguments: user agents, browsers,
	// user agents, clients, user agents, devices, ips, countries, ips,
	// regions, then the chunk's as above.
	qBackfillUpdate = register(Query{Name: "events.backfill.update",
		SQL: "ALTER TABLE events UPDATE ua_browser = transform(useragent, ?, ?, ua_browser), ua_client = transform(useragent, ?, ?, ua_client), " +
			"ua_device = transform(useragent, ?, ?, ua_device), geo_country = transform(ip, ?, ?, geo_country), geo_region = transform(ip, ?, ?, geo_region) " +
			backfillWhere,
		Sample: []any{[]string{"a", ""}, []string{"A", ""}, []string{"a", ""}, []string{"A", ""}, []string{"a", ""}, []string{"A", ""},
			[]string{"1.2.3.4", ""}, []string{"US", ""}, []string{"1.2.3.4", ""}, []string{"TX", ""}, uint32(1764201600), uint32(1764288000), uint8(1), ""}})
)
