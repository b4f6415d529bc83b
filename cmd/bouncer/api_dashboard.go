package main

import (
	"context"
	"time"

	"github.com/bouncer-mail/bouncer/api"
)

// The dashboard's own queries (api.DashboardStore).

var _ api.DashboardStore = apiStore{}

func (a apiStore) BounceReasons(ctx context.Context, account string, from, to time.Time, limit int) ([]api.ReasonCount, error) {
	rs, err := a.s.BounceReasons(ctx, account, from, to, limit)
	out := make([]api.ReasonCount, len(rs))
	for i, r := range rs {
		out[i] = api.ReasonCount{ReasonCode: r.ReasonCode, Classification: r.Classification, BounceType: r.BounceType,
			Bounces: r.Bounces, Blocks: r.Blocks, Example: r.Example}
	}
	return out, err
}

func (a apiStore) TopDomains(ctx context.Context, account string, from, to time.Time, limit int) ([]api.DomainCounts, error) {
	ds, err := a.s.TopDomains(ctx, account, from, to, limit)
	out := make([]api.DomainCounts, len(ds))
	for i, d := range ds {
		out[i] = api.DomainCounts{Domain: d.Domain, Counts: api.StatCounts(d.Counts)}
	}
	return out, err
}
