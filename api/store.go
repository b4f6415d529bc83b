package api

import (
	"context"
	"time"

	"github.com/bouncer-mail/bouncer/analytics"
	"github.com/bouncer-mail/bouncer/suppression"
)

// BounceCounts counts bounces for the bounce classification routes
// (sinks/clickhouse's Store implements it).
type BounceCounts interface {
	BounceClassifications(ctx context.Context, account string, from, to time.Time) ([]analytics.DayCount, error)
	BounceClassificationDomains(ctx context.Context, account, class string, from, to time.Time) ([]analytics.DayCount, error)
}

// ListStore is the Store of a deployment: the suppression service for the
// lists (so API writes go through its write-then-publish rule) and
// Counts for the bounce counts.
type ListStore struct {
	*suppression.Service
	Counts BounceCounts
}

var _ Store = ListStore{}

func (s ListStore) BounceClassifications(ctx context.Context, account string, from, to time.Time) ([]analytics.DayCount, error) {
	return s.Counts.BounceClassifications(ctx, account, from, to)
}

func (s ListStore) BounceClassificationDomains(ctx context.Context, account, class string, from, to time.Time) ([]analytics.DayCount, error) {
	return s.Counts.BounceClassificationDomains(ctx, account, class, from, to)
}
