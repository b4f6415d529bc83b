package clickhouse

import (
	"context"
	"sort"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
)

// BounceReasons counts one account's bounce events in [from, to) per reason
// code, classification and bounce type, most first, at most limit rows; the
// example is the newest diagnostic text. Counts are the stats API's (each
// sg_event_id once per day, from the rollups where they cover the day).
func (s *Store) BounceReasons(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.ReasonCount, error) {
	m, err := s.countStats(ctx, countsQuery{account: account, by: "all", dim: dimReason, all: true, from: from, to: to})
	if err != nil {
		return nil, err
	}
	var out []analytics.ReasonCount
	for k, a := range m {
		if a.counts.Bounces+a.counts.Blocks == 0 {
			continue
		}
		out = append(out, analytics.ReasonCount{ReasonCode: k.key, Classification: k.class, BounceType: k.btype,
			Bounces: a.counts.Bounces, Blocks: a.counts.Blocks, Example: a.example})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Bounces+a.Blocks != b.Bounces+b.Blocks {
			return a.Bounces+a.Blocks > b.Bounces+b.Blocks
		}
		if a.ReasonCode != b.ReasonCode {
			return a.ReasonCode < b.ReasonCode
		}
		if a.Classification != b.Classification {
			return a.Classification < b.Classification
		}
		return a.BounceType < b.BounceType
	})
	return out[:min(len(out), max(limit, 0))], nil
}

// TopDomains returns the stats counts of one account's limit recipient
// domains with the most requests (processed events and drops) in
// [from, to), most first.
func (s *Store) TopDomains(ctx context.Context, account string, from, to time.Time, limit int) ([]analytics.DomainCounts, error) {
	m, err := s.countStats(ctx, countsQuery{account: account, by: "all", dim: dimDomain, all: true, from: from, to: to})
	if err != nil {
		return nil, err
	}
	var out []analytics.DomainCounts
	for k, a := range m {
		if k.key == "" || a.counts.Processed+a.counts.Drops == 0 {
			continue
		}
		out = append(out, analytics.DomainCounts{Domain: k.key, Counts: a.counts})
	}
	volume := func(d analytics.DomainCounts) uint64 { return d.Counts.Processed + d.Counts.Drops }
	sort.Slice(out, func(i, j int) bool {
		if vi, vj := volume(out[i]), volume(out[j]); vi != vj {
			return vi > vj
		}
		return out[i].Domain < out[j].Domain
	})
	return out[:min(len(out), max(limit, 0))], nil
}
