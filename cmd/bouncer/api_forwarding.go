package main

import (
	"context"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

// Bounce forwarding settings for the API, kept in ClickHouse
// (forwarding_settings); the worker's forwarder reads them.

var _ api.ForwardingStore = apiStore{}

func (a apiStore) ForwardBounce(ctx context.Context, account string) (api.ForwardBounce, error) {
	fs, err := a.s.ForwardSetting(ctx, account)
	return api.ForwardBounce{Enabled: fs.Enabled, Email: fs.Email}, err
}

func (a apiStore) SetForwardBounce(ctx context.Context, account string, fb api.ForwardBounce, at time.Time) error {
	return a.s.WriteForwardSetting(ctx, clickhouse.ForwardSetting{AccountID: account, Enabled: fb.Enabled, Email: fb.Email}, at)
}
