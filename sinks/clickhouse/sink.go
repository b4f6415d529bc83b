package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/schemas"
	"github.com/bouncer-mail/bouncer/suppression"
)

var _ pipeline.Sink = (*Store)(nil)

// HighWater returns the highest offsets of a partition held by the events
// and dead_letters tables (-1 when none).
func (s *Store) HighWater(ctx context.Context, topic string, partition int) (pipeline.Marks, error) {
	ev, err := s.highWater(ctx, qEventsHighWater, "events", topic, partition)
	if err != nil {
		return pipeline.Marks{}, err
	}
	dl, err := s.highWater(ctx, qDeadLettersHighWater, "dead_letters", topic, partition)
	if err != nil {
		return pipeline.Marks{}, err
	}
	return pipeline.Marks{Events: ev, DeadLetters: dl}, nil
}

func (s *Store) highWater(ctx context.Context, q Query, table, topic string, partition int) (int64, error) {
	if s.cluster != nil {
		return s.clusterHighWater(ctx, q, table, topic, partition)
	}
	var n, hi uint64
	if err := s.conn.QueryRow(ctx, q.SQL, topic, uint32(partition)).Scan(&n, &hi); err != nil {
		return 0, fmt.Errorf("%s: %w", q.Name, err)
	}
	if n == 0 {
		return -1, nil
	}
	return int64(hi), nil
}

// insert sends one batch built by fill; a failed batch is dropped, never
// re-sent.
func (s *Store) insert(ctx context.Context, q Query, fill func(b driver.Batch) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
	defer cancel()
	batch, err := s.conn.PrepareBatch(ctx, q.SQL)
	if err != nil {
		return fmt.Errorf("%s: prepare: %w", q.Name, err)
	}
	if err := fill(batch); err != nil {
		batch.Abort()
		return fmt.Errorf("%s: %w", q.Name, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("%s: send: %w", q.Name, err)
	}
	return nil
}

// appendColumns appends one slice per column, in order.
func appendColumns(b driver.Batch, cols ...any) error {
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

func ingestTime() (date, at time.Time) {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC), now.Truncate(time.Second)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// WriteEvents inserts rows as one block into one partition.
func (s *Store) WriteEvents(ctx context.Context, rows []pipeline.Row) error {
	n := len(rows)
	date, at := ingestTime()
	var (
		dates, ats, stamps                                     = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		topics, accounts, events, types, emails, norms         = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		domains, providers, ids, msgIDs, smtpIDs               = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		reasons, statuses, responses, btypes, classes, codes   = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rules, prodClasses, ips, urls, agents, froms, subjects = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		customs                                                = make([]string, n)
		parts, indexes, attempts                               = make([]uint32, n), make([]uint32, n), make([]uint32, n)
		offsets                                                = make([]uint64, n)
		valids, derivedIDs, tlss, deriveds                     = make([]uint8, n), make([]uint8, n), make([]uint8, n), make([]uint8, n)
		groups                                                 = make([]int64, n)
		cats                                                   = make([][]string, n)
	)
	for i := range rows {
		r := &rows[i]
		dates[i], ats[i], stamps[i] = date, at, time.Unix(r.Timestamp, 0).UTC()
		topics[i], parts[i], offsets[i], indexes[i] = r.Topic, uint32(r.Partition), uint64(r.Offset), uint32(r.Index)
		accounts[i], events[i], types[i] = r.AccountID, string(r.Event.Event), r.Type
		emails[i], norms[i], domains[i], providers[i] = r.Email, r.EmailNorm, r.Domain, r.Provider
		valids[i], ids[i], derivedIDs[i] = b2u(r.AddressValid), r.SGEventID, b2u(r.EventIDDerived)
		msgIDs[i], smtpIDs[i], cats[i] = r.SGMessageID, r.SMTPID, r.Categories
		if cats[i] == nil {
			cats[i] = []string{}
		}
		reasons[i], statuses[i], responses[i], attempts[i] = r.Reason, r.Status, r.Response, r.Attempt
		if b := r.Bounce; b != nil {
			btypes[i], classes[i], codes[i], rules[i] = string(b.BounceType), string(b.Classification), string(b.Reason), b.Rule
		}
		prodClasses[i], ips[i], tlss[i], urls[i], agents[i] = r.BounceClassification, r.IP, b2u(r.TLS), r.URL, r.UserAgent
		groups[i], froms[i], subjects[i], customs[i], deriveds[i] = r.ASMGroupID, r.FromEmail, r.Subject, r.Custom, b2u(r.Derived)
	}
	fill := func(b driver.Batch) error {
		return appendColumns(b, dates, ats, topics, parts, offsets, indexes,
			accounts, events, types, stamps, emails, norms, domains, providers,
			valids, ids, derivedIDs, msgIDs, smtpIDs, cats,
			reasons, statuses, responses, attempts, btypes, classes,
			codes, rules, prodClasses, ips, tlss, urls, agents,
			groups, froms, subjects, customs, deriveds)
	}
	if s.cluster != nil && n > 0 {
		return s.clusterInsert(ctx, qInsertEvents, "events", rows[0].Partition, fill)
	}
	return s.insert(ctx, qInsertEvents, fill)
}

// WriteDeadLetters inserts rejected input as one block.
func (s *Store) WriteDeadLetters(ctx context.Context, rows []schemas.DeadLetter) error {
	n := len(rows)
	date, at := ingestTime()
	dates, ats := make([]time.Time, n), make([]time.Time, n)
	topics, codes, details, raws, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	parts, offsets, indexes := make([]uint32, n), make([]uint64, n), make([]int32, n)
	for i, r := range rows {
		dates[i], ats[i] = date, at
		topics[i], parts[i], offsets[i], indexes[i] = r.Topic, uint32(r.Partition), uint64(r.Offset), int32(r.Index)
		codes[i], details[i], raws[i], keys[i] = string(r.Code), r.Detail, string(r.Raw), string(r.Key)
	}
	fill := func(b driver.Batch) error {
		return appendColumns(b, dates, ats, topics, parts, offsets, indexes, codes, details, raws, keys)
	}
	if s.cluster != nil && n > 0 {
		return s.clusterInsert(ctx, qInsertDeadLetters, "dead_letters", rows[0].Partition, fill)
	}
	return s.insert(ctx, qInsertDeadLetters, fill)
}

// WriteSuppressions inserts list changes as one block.
func (s *Store) WriteSuppressions(ctx context.Context, rows []suppression.Change) error {
	n := len(rows)
	accounts, lists, norms, emails := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	reasons, statuses, classes, codes, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	groups, created, deleted, versions := make([]int64, n), make([]time.Time, n), make([]uint8, n), make([]uint64, n)
	for i, r := range rows {
		accounts[i], lists[i], groups[i], norms[i], emails[i] = r.AccountID, r.List, r.GroupID, r.EmailNorm, r.Email
		created[i], reasons[i], statuses[i], classes[i], codes[i] = r.At, r.Reason, r.Status, r.Classification, r.ReasonCode
		deleted[i], versions[i], sources[i] = b2u(r.Deleted), r.Version(), r.Source
	}
	return s.insert(ctx, qInsertSuppressions, func(b driver.Batch) error {
		return appendColumns(b, accounts, lists, groups, norms, emails, created, reasons, statuses, classes, codes, deleted, versions, sources)
	})
}
