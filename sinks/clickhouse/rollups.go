package clickhouse

// # Stats rollups
//
// The stats routes and the dashboard read per-day counts. A day's counts
// are defined by the exact per-day query over the events table (dailySQL:
// each sg_event_id once per day, unique opens and clicks per day), and a
// week or a month is the sum of its days, as SendGrid sums its daily stats.
// A build runs that same query for some accounts and one day and stores
// the result in stats_daily, so a day read from the rollups equals the day
// read from the events table whenever the build saw every event of the day.
// Whether it did is proven with marks, not timing:
//
//   - Before a batch's events are inserted, the sink inserts one stats_marks
//     row per (account, day) the batch touches, holding the highest offset
//     of the batch's rows of that account and day. So a stored event always
//     has a stored mark at or above its offset.
//   - A build first reads, per (topic, partition), the highest offset M of
//     the chunk's rows in the events table, then counts only rows at or
//     below M, and stores M beside the counts in the same insert (the
//     'build' row, one part: the counts are visible exactly when the build
//     row is). A partition's batches are inserted one after another in
//     offset order (pipeline.Sink's contract), each atomically, so a row
//     at offset M being visible means every batch of that partition up to
//     M is wholly visible: the build counted all of them, and nothing else.
//   - A reader takes a day from the rollups only if its latest build covers
//     every mark of the day (mark offset <= M of its topic and partition);
//     any other day, and any day without a build, is counted from the
//     events table by the exact query. A batch that failed or was killed
//     leaves a mark above every build's M until it is stored (a replay
//     stores the same offsets), so its day is read raw meanwhile.
//   - stats_daily is a ReplacingMergeTree: a newer build of a day replaces
//     the older one's rows when their parts merge, possibly between a
//     reader choosing a build and reading its counts. The counts are read
//     together with the chosen build's own row (one query, so one replica
//     of the shard and one set of parts answers), and a day whose build
//     row does not come back is read from the events table instead.
//
//   - A day whose latest build does not cover its marks, with no erasure
//     since the build (today, while events arrive: a "tail day"), is read
//     as the build's counts plus what the rows the build did not count add
//     to them (dailyTailSQL): each count is distinct keys per day, so the
//     rows are not simply added; the tail query reads the uncounted rows
//     (found by their offsets: above the build's cover) and every counted
//     row sharing a key with one of them (a resent sg_event_id, an open of
//     the same message by the same recipient), and counts the keys only
//     uncounted rows have. That needs one column of the day's rows (the
//     sg_event_ids) instead of a dozen, and hash sets only for those few
//     rows; the answer equals the events table's for the same reasons a
//     build's does (a row above the cover was not visible to the build, a
//     row at or below it was).
//
// Nothing in this depends on the order of the two inserts succeeding
// together: a crash after the mark and before the events leaves a day read
// raw until the next build; a crash during a build leaves no build row and
// the day's previous build (with its own M) or the raw query. Producer
// resends are counted once because both the build and the raw read count
// distinct sg_event_ids per day.
//
// A privacy erasure deletes events by mutation: before the mutation, it
// marks every day of the address's events with kafka_topic '' and, as
// offset, the server time by which it waits for the mutation; only a build
// started after that time covers the mark. Retention (dropping whole
// ingest months of events) does not touch the rollups: days it emptied are
// read from the rollups with the counts they had until a rebuild of those
// days (bouncer rollups rebuild --from --to).
//
// On a cluster, stats_marks is written like events (into the local table
// of the partition's shard) and stats_daily through the Distributed table
// (sharded by account), so one (account, day) build is one part on one
// shard.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/pipeline"
)

// day numbers count days since 1970-01-01 (UTC), as ClickHouse's Date.
func dayOf(t time.Time) uint32 { return uint32(max(t.Unix(), 0) / 86400) }

func dayTime(d uint32) time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

func dayString(d uint32) string { return dayTime(d).Format(time.DateOnly) }

// dayPeriod is the period of a day as the stats queries name it.
func dayPeriod(d uint32, by string) string {
	t := dayTime(d)
	switch by {
	case "month":
		t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	case "week":
		t = t.AddDate(0, 0, -((int(t.Weekday()) + 6) % 7))
	case "all":
		t = time.Unix(0, 0).UTC()
	}
	return t.Format(time.DateOnly)
}

// writeStatsMarks stores the marks of batches of events (see the section
// comment), as one insert: one row per (account, day, Kafka topic and
// partition) with its highest offset. It runs before the events insert of
// the same rows.
func (s *Store) writeStatsMarks(ctx context.Context, parts ...[]pipeline.Row) error {
	type mark struct {
		account   string
		day       uint32
		topic     string
		partition int
	}
	top := map[mark]int64{}
	for _, rows := range parts {
		for i := range rows {
			r := &rows[i]
			k := mark{r.AccountID, uint32(max(r.Timestamp, 0) / 86400), r.Topic, r.Partition}
			if o, ok := top[k]; !ok || r.Offset > o {
				top[k] = r.Offset
			}
		}
	}
	if len(top) == 0 {
		return nil
	}
	n := len(top)
	date, _ := s.ingestTime()
	dates, accounts, days := make([]time.Time, 0, n), make([]string, 0, n), make([]time.Time, 0, n)
	topics, partitions, offsets := make([]string, 0, n), make([]uint32, 0, n), make([]uint64, 0, n)
	first := -1
	for k, o := range top {
		dates, accounts, days = append(dates, date), append(accounts, k.account), append(days, dayTime(k.day))
		topics, partitions, offsets = append(topics, k.topic), append(partitions, uint32(k.partition)), append(offsets, uint64(o))
		first = k.partition
	}
	fill := func(b driver.Batch) error {
		return appendColumns(b, dates, accounts, days, topics, partitions, offsets)
	}
	if s.cluster != nil {
		// The rows of one call are one shard's (one groupCommit per shard).
		return s.clusterInsert(ctx, qInsertStatsMarks, "stats_marks", first, fill)
	}
	return s.insert(ctx, qInsertStatsMarks, fill)
}

// erasedDays are the days of an address's events (before an erasure).
func (s *Store) erasedDays(ctx context.Context, account, hash string) ([]uint32, error) {
	var days []uint32
	err := collect(ctx, s.conn, qRollupErasedDays, &days, account, hash, hash)
	return days, err
}

// markErasure marks days of an account so that only a build started more
// than wait after now (the server's clock) covers them. Erase marks the
// days of the address's events before its mutation with the time it waits
// for the mutation at most, and again after the mutation finished with no
// wait: so a build that counts the erased events never covers the days, a
// crash in between included.
func (s *Store) markErasure(ctx context.Context, account string, days []uint32, wait time.Duration) error {
	if len(days) == 0 {
		return nil
	}
	var now uint32
	if err := s.conn.QueryRow(ctx, qRollupNow.SQL).Scan(&now); err != nil {
		return fmt.Errorf("%s: %w", qRollupNow.Name, err)
	}
	until := uint64(now) + uint64(wait/time.Second) + 1
	date, _ := s.ingestTime()
	return s.insert(ctx, qInsertStatsMarks, func(b driver.Batch) error {
		for _, d := range days {
			if err := b.Append(date, account, dayTime(d), "", uint32(0), until); err != nil {
				return err
			}
		}
		return nil
	})
}

// build is what a build of one (account, day) saw.
type build struct {
	version uint64
	started uint32
	cover   map[string]uint64 // "topic/partition" -> highest offset counted
	agents  bool              // it counted the user agent and place dimensions
}

// agentDim reports whether dim is one only builds with agents hold.
func agentDim(dim string) bool {
	return dim == dimBrowser || dim == dimClient || dim == dimDevice || dim == dimGeo
}

type coverMark struct {
	topic     string
	partition uint32
	offset    uint64
}

// covers reports whether a build counted every event a day's marks stand
// for.
func (b *build) covers(marks []coverMark) bool {
	for _, m := range marks {
		if m.topic == "" {
			if m.offset >= uint64(b.started) {
				return false
			}
			continue
		}
		o, ok := b.cover[fmt.Sprintf("%s/%d", m.topic, m.partition)]
		if !ok || m.offset > o {
			return false
		}
	}
	return true
}

func newBuild(version uint64, started uint32, topics []string, parts []uint32, offsets []uint64) *build {
	b := &build{version: version, started: started, cover: make(map[string]uint64, len(topics))}
	for i := range topics {
		b.cover[fmt.Sprintf("%s/%d", topics[i], parts[i])] = offsets[i]
	}
	return b
}

// rollupPlan splits one account's days [from, to) into those its rollups
// answer (day -> build version) and those read from the events table
// (tail days among them).
func (s *Store) rollupPlan(ctx context.Context, account, dim string, from, to uint32) (clean map[uint32]uint64, dirty []uint32, err error) {
	p, err := s.planDays(ctx, account, dim, from, to)
	if err != nil {
		return nil, nil, err
	}
	for d := range p.tails {
		p.dirty = append(p.dirty, d)
	}
	slices.Sort(p.dirty)
	return p.clean, p.dirty, nil
}

// dayPlan is how countStats reads an account's days: from the rollups
// (clean: day -> build version), from a build and the rows it did not
// count (tails), or from the events table (dirty).
type dayPlan struct {
	clean map[uint32]uint64
	tails map[uint32]*dayTail
	dirty []uint32
}

// dayTail is a day read as a build plus the day's rows it did not count:
// a day with events stored since its latest build (today, while events
// arrive). lowest is the lowest offset the build counted up to among the
// partitions with rows it did not count (0 when one has none counted):
// every such row is above it.
type dayTail struct {
	build  *build
	lowest uint64
}

// maxTailDays bounds the tail days of one query (each costs a query that
// reads one column of the whole day); more are read from the events
// table.
const maxTailDays = 3

// tailOf returns how a day whose build b does not cover its marks is read
// as b plus the rows b did not count, or nil when it cannot be: an
// erasure since the build (its mark is above b's start) removed events b
// counted.
func (b *build) tailOf(marks []coverMark) *dayTail {
	for _, m := range marks {
		if m.topic == "" && m.offset >= uint64(b.started) {
			return nil
		}
	}
	return &dayTail{build: b, lowest: lowestUncounted(marks, b.cover)}
}

// lowestUncounted is the lowest offset counted up to, by cover
// ("topic/partition" -> highest offset counted: a build's cover, a
// window's seen), among the partitions whose marks are above it (0 for a
// partition with none counted, or when no mark is: then read from the
// start). Marks without a topic (erasures, reclassifications) are not
// partitions' and are skipped.
func lowestUncounted(marks []coverMark, cover map[string]uint64) uint64 {
	lowest := uint64(math.MaxUint64)
	for _, m := range marks {
		if m.topic == "" {
			continue
		}
		o, ok := cover[fmt.Sprintf("%s/%d", m.topic, m.partition)]
		if ok && m.offset <= o {
			continue
		}
		lowest = min(lowest, o) // 0 when the partition has none counted
	}
	if lowest == math.MaxUint64 {
		return 0
	}
	return lowest
}

// planDays plans one account's days [from, to): clean when the day's
// latest build covers every mark of the day, a tail day when it does not
// but no erasure came since (at most maxTailDays, the latest), dirty
// otherwise (no build, an erasure, or a build without the dimension).
func (s *Store) planDays(ctx context.Context, account, dim string, from, to uint32) (dayPlan, error) {
	// Builds and marks are read side by side; in either order the answer
	// is a snapshot: a build newer than the marks read covers at least
	// what an older one does.
	marks := map[uint32][]coverMark{}
	var marksErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		marksErr = s.readMarks(ctx, account, from, to, marks)
	}()
	builds := map[uint32]*build{}
	buildsErr := s.readBuilds(ctx, account, from, to, builds)
	<-done
	if err := errors.Join(buildsErr, marksErr); err != nil {
		return dayPlan{}, err
	}
	p := dayPlan{clean: map[uint32]uint64{}, tails: map[uint32]*dayTail{}}
	for d := to; d > from; d-- {
		day := d - 1
		b := builds[day]
		switch {
		case b == nil || !b.agents && agentDim(dim):
			p.dirty = append(p.dirty, day)
		case b.covers(marks[day]):
			p.clean[day] = b.version
		default:
			if t := b.tailOf(marks[day]); t != nil && len(p.tails) < maxTailDays {
				p.tails[day] = t
			} else {
				p.dirty = append(p.dirty, day)
			}
		}
	}
	slices.Reverse(p.dirty)
	return p, nil
}

// readBuilds reads the latest build of each of an account's days.
func (s *Store) readBuilds(ctx context.Context, account string, from, to uint32, builds map[uint32]*build) error {
	rows, err := s.conn.Query(ctx, qRollupBuilds.SQL, account, dayString(from), dayString(to))
	if err != nil {
		return fmt.Errorf("%s: %w", qRollupBuilds.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d, started uint32
		var version uint64
		var topics []string
		var parts []uint32
		var offsets []uint64
		var key string
		if err := rows.Scan(&d, &version, &started, &topics, &parts, &offsets, &key); err != nil {
			return fmt.Errorf("%s: %w", qRollupBuilds.Name, err)
		}
		if _, ok := builds[d]; !ok { // newest first
			builds[d] = newBuild(version, started, topics, parts, offsets)
			builds[d].agents = key == buildAgents
		}
	}
	return rows.Err()
}

// readMarks reads the marks of an account's days.
func (s *Store) readMarks(ctx context.Context, account string, from, to uint32, marks map[uint32][]coverMark) error {
	rows, err := s.conn.Query(ctx, qRollupMarks.SQL, account, dayString(from), dayString(to))
	if err != nil {
		return fmt.Errorf("%s: %w", qRollupMarks.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var d uint32
		var m coverMark
		if err := rows.Scan(&d, &m.topic, &m.partition, &m.offset); err != nil {
			return fmt.Errorf("%s: %w", qRollupMarks.Name, err)
		}
		marks[d] = append(marks[d], m)
	}
	return rows.Err()
}

// DaySource is where a stats query over a range reads one day from.
type DaySource string

const (
	// FromRollups: the day's latest build covers every event of the day.
	FromRollups DaySource = "rollups"
	// FromRollupsAndTail: the latest build plus the day's events stored
	// since it (a day still being ingested; at most maxTailDays of a
	// range, the latest).
	FromRollupsAndTail DaySource = "rollups+tail"
	// FromEvents: the events table (no build, an erasure since the
	// build, or more tail days than a query reads that way).
	FromEvents DaySource = "events"
)

// RollupStatus says, for each day of one account in [from, to) (UTC
// days), how a stats query over that range reads it.
func (s *Store) RollupStatus(ctx context.Context, account string, from, to time.Time) (map[time.Time]DaySource, error) {
	p, err := s.planDays(ctx, account, dimGlobal, dayOf(from), dayOf(to))
	if err != nil {
		return nil, err
	}
	out := make(map[time.Time]DaySource, len(p.clean)+len(p.tails)+len(p.dirty))
	for d := range p.clean {
		out[dayTime(d)] = FromRollups
	}
	for d := range p.tails {
		out[dayTime(d)] = FromRollupsAndTail
	}
	for _, d := range p.dirty {
		out[dayTime(d)] = FromEvents
	}
	return out, nil
}

// rollupKey is one answer row of a per-period count: period, key, and for
// bounce reasons classification and bounce type.
type rollupKey struct{ period, key, class, btype string }

type rollupAgg struct {
	counts    analytics.StatCounts
	example   string
	exampleAt time.Time
}

func (a *rollupAgg) add(c *analytics.StatCounts, example string, at time.Time) {
	x := &a.counts
	x.Processed += c.Processed
	x.DerivedDrops += c.DerivedDrops
	x.Drops += c.Drops
	x.BounceDrops += c.BounceDrops
	x.SpamReportDrops += c.SpamReportDrops
	x.UnsubscribeDrops += c.UnsubscribeDrops
	x.InvalidDrops += c.InvalidDrops
	x.Delivered += c.Delivered
	x.Deferred += c.Deferred
	x.Bounces += c.Bounces
	x.Blocks += c.Blocks
	x.Opens += c.Opens
	x.UniqueOpens += c.UniqueOpens
	x.Clicks += c.Clicks
	x.UniqueClicks += c.UniqueClicks
	x.SpamReports += c.SpamReports
	x.Unsubscribes += c.Unsubscribes
	if example != "" && (a.example == "" || at.After(a.exampleAt)) {
		a.example, a.exampleAt = example, at
	}
}

func countDests(c *analytics.StatCounts) []any {
	return []any{&c.Processed, &c.DerivedDrops, &c.Drops, &c.BounceDrops, &c.SpamReportDrops,
		&c.UnsubscribeDrops, &c.InvalidDrops, &c.Delivered, &c.Deferred, &c.Bounces, &c.Blocks,
		&c.Opens, &c.UniqueOpens, &c.Clicks, &c.UniqueClicks, &c.SpamReports, &c.Unsubscribes}
}

// countsQuery asks for one account's counts of one dimension in
// [From, To), per period.
type countsQuery struct {
	account string
	by      string // day, week, month or all
	dim     string
	all     bool     // every key, else only keys
	keys    []string // never empty when !all
	from    time.Time
	to      time.Time
	exact   bool // only the events table
}

// countStats answers q from the rollups where a build covers the day and from
// the events table elsewhere (or everywhere, when q.exact or when the
// bounds are not UTC midnights).
func (s *Store) countStats(ctx context.Context, q countsQuery) (map[rollupKey]*rollupAgg, error) {
	out := map[rollupKey]*rollupAgg{}
	if !q.to.After(q.from) {
		return out, nil
	}
	keys := q.keys
	if q.all || len(keys) == 0 {
		keys = []string{""}
	}
	midnights := q.from.Unix()%86400 == 0 && q.to.Unix()%86400 == 0
	from, to := dayOf(q.from), dayOf(q.to)
	if !midnights {
		to = dayOf(q.to.Add(-time.Second)) + 1
	}
	var dirty []uint32
	clean := map[uint32]uint64{}
	tails := map[uint32]*dayTail{}
	if q.exact || !midnights {
		for d := from; d < to; d++ {
			dirty = append(dirty, d)
		}
	} else {
		p, err := s.planDays(ctx, q.account, q.dim, from, to)
		if err != nil {
			return nil, err
		}
		clean, tails, dirty = p.clean, p.tails, p.dirty
		// A tail day's build is read with the clean days' builds.
		for d, t := range tails {
			clean[d] = t.build.version
		}
	}
	if s.planned != nil {
		s.planned()
	}
	if len(clean) > 0 {
		missing, err := s.readRollups(ctx, q, from, to, clean, out)
		if err != nil {
			return nil, err
		}
		// A day whose build was replaced by a newer one (or is not on
		// the replica that answered) is read from the events table.
		for _, d := range missing {
			delete(tails, d)
		}
		dirty = append(dirty, missing...)
		slices.Sort(dirty)
	}
	// A tail day adds what its build did not count.
	for d, t := range tails {
		if err := s.addTail(ctx, q, keys, d, t, out); err != nil {
			return nil, err
		}
	}
	// The days read from the events table, in at most maxDirtyRuns time
	// ranges: a day between two of them (built, or without events) would
	// otherwise widen the one range read to every day in between.
	for _, run := range dayRuns(dirty, maxDirtyRuns) {
		lo, hi := dayTime(run[0]), dayTime(run[len(run)-1]+1)
		if q.from.After(lo) {
			lo = q.from
		}
		if q.to.Before(hi) {
			hi = q.to
		}
		err := s.daily(ctx, q.dim, []string{q.account}, lo, hi, run, q.all, keys, nil, func(r *dailyRow) {
			addTo(out, rollupKey{dayPeriod(r.day, q.by), r.key, r.class, r.btype}, &r.counts, r.example, r.exampleAt)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addTail adds to out what the rows of an account's day that its build
// did not count add to the build's counts (dailyTailSQL), so the day's
// counts are those of the events table.
func (s *Store) addTail(ctx context.Context, q countsQuery, keys []string, day uint32, t *dayTail, out map[rollupKey]*rollupAgg) error {
	tq := qStatsTail[q.dim]
	var ids []string
	var offsets []uint64
	for id, o := range t.build.cover {
		ids, offsets = append(ids, id), append(offsets, o)
	}
	if len(ids) == 0 {
		ids, offsets = []string{""}, []uint64{0}
	}
	from, to := unixSeconds(dayTime(day)), unixSeconds(dayTime(day+1))
	var args []any
	for range 2 {
		args = append(args, ids, offsets, ids, t.lowest, q.account, from, to, ids, offsets, ids, q.account, from, to)
	}
	rows, err := s.conn.Query(ctx, tq.SQL, append(args, b2u(q.all), keys)...)
	if err != nil {
		return fmt.Errorf("%s: %w", tq.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r dailyRow
		dst := append([]any{&r.account, &r.day, &r.key, &r.class, &r.btype}, countDests(&r.counts)...)
		if err := rows.Scan(append(dst, &r.example, &r.exampleAt)...); err != nil {
			return fmt.Errorf("%s: %w", tq.Name, err)
		}
		addTo(out, rollupKey{dayPeriod(r.day, q.by), r.key, r.class, r.btype}, &r.counts, r.example, r.exampleAt)
	}
	return rows.Err()
}

// maxDirtyRuns is the most queries of the events table one countStats
// makes.
const maxDirtyRuns = 8

// dayRuns splits ascending days into at most max groups of days, each
// group spanning as few days as it can: runs of consecutive days, the
// closest runs joined until there are at most max.
func dayRuns(days []uint32, max int) [][]uint32 {
	var runs [][]uint32
	for i, d := range days {
		if i == 0 || d != days[i-1]+1 {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], d)
	}
	for len(runs) > max {
		best := 1 // join runs[best-1] and runs[best]: the smallest gap
		for i := 2; i < len(runs); i++ {
			if runs[i][0]-runs[i-1][len(runs[i-1])-1] < runs[best][0]-runs[best-1][len(runs[best-1])-1] {
				best = i
			}
		}
		runs[best-1] = append(runs[best-1], runs[best]...)
		runs = append(runs[:best], runs[best+1:]...)
	}
	return runs
}

// readRollups adds the rollups of the clean days (day -> build version) to
// out and returns the days whose build row did not come back with them.
// ClickHouse sums the days of each period; a day whose build row is
// missing (a newer build replaced it) is left out and the read repeated
// without it, since rows of its old build may still be there.
func (s *Store) readRollups(ctx context.Context, q countsQuery, from, to uint32, clean map[uint32]uint64, out map[rollupKey]*rollupAgg) ([]uint32, error) {
	keys := q.keys
	if q.all || len(keys) == 0 {
		keys = []string{""}
	}
	type periodRow struct {
		k       rollupKey
		c       analytics.StatCounts
		example string
		at      time.Time
	}
	var missing []uint32
	for len(clean) > 0 {
		builds := make([]string, 0, len(clean))
		for d, v := range clean {
			builds = append(builds, fmt.Sprintf("%d@%d", d, v))
		}
		found := map[uint32]bool{}
		var got []periodRow
		rq := qRollupRead
		rows, err := s.conn.Query(ctx, rq.SQL, q.by, q.by, q.by, q.account, q.dim, dayString(from), dayString(to), builds, b2u(q.all), keys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rq.Name, err)
		}
		for rows.Next() {
			var d uint32
			var isBuild uint8
			var r periodRow
			dst := append([]any{&d, &isBuild, &r.k.period, &r.k.key, &r.k.class, &r.k.btype}, countDests(&r.c)...)
			if err := rows.Scan(append(dst, &r.example, &r.at)...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("%s: %w", rq.Name, err)
			}
			if isBuild == 1 {
				found[d] = true
				continue
			}
			got = append(got, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		var gone []uint32
		for d := range clean {
			if !found[d] {
				gone = append(gone, d)
			}
		}
		if len(gone) == 0 {
			for _, r := range got {
				addTo(out, r.k, &r.c, r.example, r.at)
			}
			break
		}
		for _, d := range gone {
			delete(clean, d)
		}
		missing = append(missing, gone...)
	}
	return missing, nil
}

func addTo(m map[rollupKey]*rollupAgg, k rollupKey, c *analytics.StatCounts, example string, at time.Time) {
	a := m[k]
	if a == nil {
		a = &rollupAgg{}
		m[k] = a
	}
	a.add(c, example, at)
}

// dailyRow is one row of the exact per-day query.
type dailyRow struct {
	account           string
	day               uint32
	key, class, btype string
	counts            analytics.StatCounts
	example           string
	exampleAt         time.Time
}

// cover limits a per-day query to rows at or below offsets per topic and
// partition.
type cover struct {
	ids     []string // "topic/partition"
	topics  []string
	parts   []uint32
	offsets []uint64
}

// daily runs the exact per-day query of one dimension (dailySQL) for the
// given accounts and days within [from, to), calling fn for each row.
func (s *Store) daily(ctx context.Context, dim string, accounts []string, from, to time.Time, days []uint32, all bool, keys []string, cv *cover, fn func(*dailyRow)) error {
	q := qStatsDaily[dim]
	if len(keys) == 0 {
		keys = []string{""}
	}
	useCover, ids, offsets := uint8(0), []string{""}, []uint64{0}
	if cv != nil {
		useCover, ids, offsets = 1, cv.ids, cv.offsets
		if len(ids) == 0 { // nothing to count
			ids, offsets = []string{""}, []uint64{0}
		}
	}
	sql, args := inAccounts(q.SQL, accounts, unixSeconds(from), unixSeconds(to), days, b2u(all), keys, useCover, ids, offsets, ids)
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var r dailyRow
		dst := append([]any{&r.account, &r.day, &r.key, &r.class, &r.btype}, countDests(&r.counts)...)
		if err := rows.Scan(append(dst, &r.example, &r.exampleAt)...); err != nil {
			return fmt.Errorf("%s: %w", q.Name, err)
		}
		fn(&r)
	}
	return rows.Err()
}

// RollupChunk is the unit of a build: one day of some accounts.
type RollupChunk struct {
	Day      time.Time
	Accounts []string
	// Events is the chunk's rows in the events table when planned (0 when
	// unknown).
	Events uint64
}

// BuildRollups builds the rollups of one chunk (see the section comment):
// every dimension's counts and one build row per account, in one insert.
func (s *Store) BuildRollups(ctx context.Context, c RollupChunk) error {
	if len(c.Accounts) == 0 {
		return nil
	}
	var started uint32
	if err := s.conn.QueryRow(ctx, qRollupNow.SQL).Scan(&started); err != nil {
		return fmt.Errorf("%s: %w", qRollupNow.Name, err)
	}
	version := uint64(time.Now().UnixNano())
	day := dayOf(c.Day)
	from, to := dayTime(day), dayTime(day+1)
	cv := &cover{}
	sql, args := inAccounts(qRollupCover.SQL, c.Accounts, unixSeconds(from), unixSeconds(to))
	rows, err := s.conn.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", qRollupCover.Name, err)
	}
	for rows.Next() {
		var topic string
		var part uint32
		var off uint64
		if err := rows.Scan(&topic, &part, &off); err != nil {
			rows.Close()
			return fmt.Errorf("%s: %w", qRollupCover.Name, err)
		}
		cv.ids = append(cv.ids, fmt.Sprintf("%s/%d", topic, part))
		cv.topics, cv.parts, cv.offsets = append(cv.topics, topic), append(cv.parts, part), append(cv.offsets, off)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	type out struct {
		dim string
		r   dailyRow
	}
	var all []out
	for _, dim := range rollupDims {
		err := s.daily(ctx, dim, c.Accounts, from, to, []uint32{day}, true, nil, cv, func(r *dailyRow) {
			all = append(all, out{dim, *r})
		})
		if err != nil {
			return err
		}
	}
	start := dayTime(0)
	return s.insert(ctx, qInsertStatsDaily, func(b driver.Batch) error {
		for _, o := range all {
			c := &o.r.counts
			if err := b.Append(o.r.account, from, o.dim, o.r.key, o.r.class, o.r.btype, version,
				c.Processed, c.DerivedDrops, c.Drops, c.BounceDrops, c.SpamReportDrops, c.UnsubscribeDrops, c.InvalidDrops,
				c.Delivered, c.Deferred, c.Bounces, c.Blocks, c.Opens, c.UniqueOpens, c.Clicks, c.UniqueClicks,
				c.SpamReports, c.Unsubscribes, o.r.example, o.r.exampleAt, start, []string{}, []uint32{}, []uint64{}); err != nil {
				return err
			}
		}
		var z uint64
		for _, a := range c.Accounts {
			if err := b.Append(a, from, dimBuild, buildAgents, "", "", version,
				z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, "", start,
				time.Unix(int64(started), 0).UTC(), cv.topics, cv.parts, cv.offsets); err != nil {
				return err
			}
		}
		return nil
	})
}

// RollupOptions select what RebuildRollups and UpdateRollups build.
type RollupOptions struct {
	// From and To bound the days rebuilt, [From, To) (UTC days).
	From, To time.Time
	// Account, when set, rebuilds only that account.
	Account string
	// ChunkEvents is the most events one build counts at once (several
	// small accounts of one day share a build; a larger account is built
	// alone): the memory a build needs grows with it. Default 5,000,000.
	ChunkEvents uint64
	// Progress, when set, is called after each chunk with the chunks done
	// and planned, and the chunk.
	Progress func(done, total int, c RollupChunk, took time.Duration)
	// WindowProgress, when set, is called after each build of activity
	// windows (activity_days.go), which follow the chunks.
	WindowProgress func(done, total, accounts, days int, took time.Duration)
}

// RebuildRollups rebuilds the rollups of every (account, day) with events
// in [From, To), one chunk after another, fills message_index from the
// same events, then builds the days' activity windows (activity_days.go),
// and returns the chunks built.
func (s *Store) RebuildRollups(ctx context.Context, o RollupOptions) (int, error) {
	if o.ChunkEvents == 0 {
		o.ChunkEvents = 5_000_000
	}
	rows, err := s.conn.Query(ctx, qRollupDays.SQL, unixSeconds(o.From), unixSeconds(o.To), b2u(o.Account == ""), o.Account)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", qRollupDays.Name, err)
	}
	var chunks []RollupChunk
	var cur *RollupChunk
	for rows.Next() {
		var d uint32
		var account string
		var n uint64
		if err := rows.Scan(&d, &account, &n); err != nil {
			rows.Close()
			return 0, fmt.Errorf("%s: %w", qRollupDays.Name, err)
		}
		t := dayTime(d)
		if cur == nil || !cur.Day.Equal(t) || cur.Events+n > o.ChunkEvents {
			chunks = append(chunks, RollupChunk{Day: t})
			cur = &chunks[len(chunks)-1]
		}
		cur.Accounts = append(cur.Accounts, account)
		cur.Events += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n, err := s.buildChunks(ctx, chunks, true, o.Progress)
	if err != nil {
		return n, err
	}
	return n, s.buildChunkWindows(ctx, chunks, o.WindowProgress)
}

// buildChunks builds each chunk's rollups and, with index, fills
// message_index from its events (repeating rows already there is
// harmless: a message's window is the min and max of its rows).
func (s *Store) buildChunks(ctx context.Context, chunks []RollupChunk, index bool, progress func(int, int, RollupChunk, time.Duration)) (int, error) {
	for i, c := range chunks {
		start := time.Now()
		if err := s.BuildRollups(ctx, c); err != nil {
			return i, fmt.Errorf("build rollups of %s (%d accounts): %w", c.Day.Format(time.DateOnly), len(c.Accounts), err)
		}
		for _, q := range []Query{qMessageIndexRebuildMsg, qMessageIndexRebuildTo} {
			if !index {
				break
			}
			day := dayOf(c.Day)
			sql, args := inAccounts(q.SQL, c.Accounts, unixSeconds(dayTime(day)), unixSeconds(dayTime(day+1)))
			if err := s.conn.Exec(ctx, sql, args...); err != nil {
				return i, fmt.Errorf("%s of %s: %w", q.Name, c.Day.Format(time.DateOnly), err)
			}
		}
		if progress != nil {
			progress(i+1, len(chunks), c, time.Since(start))
		}
	}
	return len(chunks), nil
}

// UpdateRollups builds the (account, day)s that marks written on or after
// since (an ingest date) show as not covered by their latest build: the
// days recent batches and erasures touched. It is what a worker runs
// periodically; running it twice at once is harmless (the newer build
// wins). Up to maxAccounts accounts of one day share a build.
func (s *Store) UpdateRollups(ctx context.Context, since time.Time, maxAccounts int, progress func(int, int, RollupChunk, time.Duration)) (int, error) {
	if maxAccounts <= 0 {
		maxAccounts = 200
	}
	type ad = accountDay
	marks := map[ad][]coverMark{}
	rows, err := s.conn.Query(ctx, qRollupRecentMarks.SQL, since.UTC().Format(time.DateOnly))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", qRollupRecentMarks.Name, err)
	}
	var days []uint32
	for rows.Next() {
		var k ad
		var m coverMark
		if err := rows.Scan(&k.account, &k.day, &m.topic, &m.partition, &m.offset); err != nil {
			rows.Close()
			return 0, fmt.Errorf("%s: %w", qRollupRecentMarks.Name, err)
		}
		marks[k] = append(marks[k], m)
		if !slices.Contains(days, k.day) {
			days = append(days, k.day)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(marks) == 0 {
		return 0, nil
	}
	builds := map[ad]*build{}
	rows, err = s.conn.Query(ctx, qRollupBuildsOfDays.SQL, days)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", qRollupBuildsOfDays.Name, err)
	}
	for rows.Next() {
		var k ad
		var version uint64
		var started uint32
		var topics []string
		var parts []uint32
		var offsets []uint64
		if err := rows.Scan(&k.account, &k.day, &version, &started, &topics, &parts, &offsets); err != nil {
			rows.Close()
			return 0, fmt.Errorf("%s: %w", qRollupBuildsOfDays.Name, err)
		}
		if b := builds[k]; b == nil || version > b.version {
			builds[k] = newBuild(version, started, topics, parts, offsets)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	windows, err := s.windowsOfDays(ctx, days)
	if err != nil {
		return 0, err
	}
	// Days whose stats build does not cover their marks are built, then
	// their activity windows too; days whose window has not seen their
	// marks (its build failed after the stats') get a window only.
	perDay, windowDay := map[uint32][]string{}, map[uint32][]string{}
	for k, ms := range marks {
		if b := builds[k]; b == nil || !b.covers(ms) {
			perDay[k.day] = append(perDay[k.day], k.account)
			windowDay[k.day] = append(windowDay[k.day], k.account)
		} else if w := windows[k]; w == nil || !w.sees(ms) {
			windowDay[k.day] = append(windowDay[k.day], k.account)
		}
	}
	sort.Slice(days, func(i, j int) bool { return days[i] < days[j] })
	split := func(perDay map[uint32][]string) []RollupChunk {
		var chunks []RollupChunk
		for _, d := range days {
			accounts := perDay[d]
			sort.Strings(accounts)
			for len(accounts) > 0 {
				n := min(len(accounts), maxAccounts)
				chunks = append(chunks, RollupChunk{Day: dayTime(d), Accounts: accounts[:n]})
				accounts = accounts[n:]
			}
		}
		return chunks
	}
	n, err := s.buildChunks(ctx, split(perDay), false, progress)
	if err != nil {
		return n, err
	}
	return n, s.buildChunkWindows(ctx, split(windowDay), nil)
}

// accountDay is one account's day.
type accountDay struct {
	account string
	day     uint32
}

// windowsOfDays reads the latest activity window of every account's
// given days.
func (s *Store) windowsOfDays(ctx context.Context, days []uint32) (map[accountDay]*activityWindow, error) {
	out := map[accountDay]*activityWindow{}
	rows, err := s.conn.Query(ctx, qActivityWindowsOfDays.SQL, days)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qActivityWindowsOfDays.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k accountDay
		w := &activityWindow{}
		var topics []string
		var parts []uint32
		var offsets []uint64
		if err := rows.Scan(&k.account, &k.day, &w.version, &topics, &parts, &offsets); err != nil {
			return nil, fmt.Errorf("%s: %w", qActivityWindowsOfDays.Name, err)
		}
		if o := out[k]; o != nil && o.version > w.version {
			continue
		}
		w.seen = seenOf(topics, parts, offsets)
		out[k] = w
	}
	return out, rows.Err()
}

// rollupsDims maps a stats segment to its rollup dimension.
func rollupDim(segment string) (string, error) {
	switch segment {
	case analytics.SegmentGlobal:
		return dimGlobal, nil
	case analytics.SegmentCategory:
		return dimCategory, nil
	case analytics.SegmentProvider:
		return dimProvider, nil
	case analytics.SegmentDomain:
		return dimDomain, nil
	case analytics.SegmentBrowser:
		return dimBrowser, nil
	case analytics.SegmentClient:
		return dimClient, nil
	case analytics.SegmentDevice:
		return dimDevice, nil
	case analytics.SegmentCountry, analytics.SegmentRegion:
		return dimGeo, nil
	}
	return "", fmt.Errorf("stats: unknown segment %q", segment)
}

// sortedKeys orders answer rows by period, then key (then classification
// and bounce type).
func sortedKeys(m map[rollupKey]*rollupAgg) []rollupKey {
	keys := make([]rollupKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.period != b.period {
			return a.period < b.period
		}
		if a.key != b.key {
			return a.key < b.key
		}
		if a.class != b.class {
			return a.class < b.class
		}
		return a.btype < b.btype
	})
	return keys
}
