package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/bouncer-mail/bouncer/subscription"
)

// WriteDeliveries inserts delivery log rows as one block.
func (s *Store) WriteDeliveries(ctx context.Context, rows []subscription.Delivery) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	dates, ats := make([]time.Time, n), make([]time.Time, n)
	accounts, endpoints, ids, results, responses, circuits := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	attempts, statuses := make([]uint16, n), make([]uint16, n)
	durations, events := make([]uint32, n), make([]uint32, n)
	// One partition per insert: the date of the batch, not of each row.
	date, _ := s.ingestTime()
	for i, r := range rows {
		dates[i], ats[i] = date, r.At.UTC().Truncate(time.Second)
		accounts[i], endpoints[i], ids[i], results[i], responses[i], circuits[i] = r.AccountID, r.EndpointID, r.WebhookID, r.Result, r.Response, r.Circuit
		attempts[i], statuses[i] = uint16(min(max(r.Attempt, 0), 65535)), uint16(min(max(r.Status, 0), 65535))
		durations[i], events[i] = uint32(max(r.Duration.Milliseconds(), 0)), uint32(max(r.Events, 0))
	}
	return s.insert(ctx, qInsertDeliveries, func(b driver.Batch) error {
		return appendColumns(b, dates, ats, accounts, endpoints, ids, attempts, results, statuses, durations, responses, events, circuits)
	})
}

// WriteFailedBatches inserts failed batches (or their replay marks) as one
// block; the newest write of a batch wins.
func (s *Store) WriteFailedBatches(ctx context.Context, rows []subscription.FailedBatch) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	date, _ := s.ingestTime()
	version := uint64(time.Now().UnixNano())
	dates, faileds, replayeds := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	accounts, endpoints, ids, reasons, errs, batches, replayIDs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	topics := make([]string, n)
	versions := make([]uint64, n)
	attempts, statuses := make([]uint16, n), make([]uint16, n)
	events := make([]uint32, n)
	for i, r := range rows {
		dates[i], faileds[i] = date, r.FailedAt.UTC().Truncate(time.Second)
		replayeds[i] = time.Unix(0, 0).UTC()
		if !r.ReplayedAt.IsZero() {
			replayeds[i] = r.ReplayedAt.UTC().Truncate(time.Second)
		}
		accounts[i], endpoints[i], ids[i], reasons[i], errs[i], batches[i], replayIDs[i] = r.AccountID, r.EndpointID, r.WebhookID, r.Reason, r.LastError, string(r.Batch), r.ReplayID
		topics[i] = r.ReplayTopic
		versions[i] = version + uint64(i)
		attempts[i], statuses[i] = uint16(min(max(r.Attempts, 0), 65535)), uint16(min(max(r.LastStatus, 0), 65535))
		events[i] = uint32(max(r.Events, 0))
	}
	return s.insert(ctx, qInsertFailedBatches, func(b driver.Batch) error {
		return appendColumns(b, dates, faileds, accounts, endpoints, ids, versions, attempts, reasons, statuses, errs, events, batches, topics, replayeds, replayIDs)
	})
}

// FailedBatches lists the failed batches of an endpoint since a time,
// oldest first, at most limit.
func (s *Store) FailedBatches(ctx context.Context, account, endpoint string, since time.Time, limit int) ([]subscription.FailedBatch, error) {
	rows, err := s.conn.Query(ctx, qFailedBatches.SQL, account, endpoint, uint32(max(since.Unix(), 0)), uint64(max(limit, 0)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qFailedBatches.Name, err)
	}
	defer rows.Close()
	var out []subscription.FailedBatch
	for rows.Next() {
		r, err := scanFailed(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", qFailedBatches.Name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// FailedBatch returns one failed batch, or subscription.ErrNoFailedBatch.
func (s *Store) FailedBatch(ctx context.Context, account, endpoint, webhookID string) (subscription.FailedBatch, error) {
	rows, err := s.conn.Query(ctx, qFailedBatch.SQL, account, endpoint, webhookID)
	if err != nil {
		return subscription.FailedBatch{}, fmt.Errorf("%s: %w", qFailedBatch.Name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return subscription.FailedBatch{}, err
		}
		return subscription.FailedBatch{}, subscription.ErrNoFailedBatch
	}
	r, err := scanFailed(rows)
	if err != nil {
		return subscription.FailedBatch{}, fmt.Errorf("%s: %w", qFailedBatch.Name, err)
	}
	return r, nil
}

func scanFailed(rows driver.Rows) (subscription.FailedBatch, error) {
	var r subscription.FailedBatch
	var attempts, status uint16
	var events uint32
	var batch string
	if err := rows.Scan(&r.FailedAt, &r.AccountID, &r.EndpointID, &r.WebhookID, &attempts, &r.Reason, &status, &r.LastError, &events, &batch, &r.ReplayTopic, &r.ReplayedAt, &r.ReplayID); err != nil {
		return r, err
	}
	r.Attempts, r.LastStatus, r.Events, r.Batch = int(attempts), int(status), int(events), []byte(batch)
	if r.ReplayedAt.Unix() <= 0 {
		r.ReplayedAt = time.Time{}
	}
	r.FailedAt = r.FailedAt.UTC()
	return r, nil
}

// EndpointDeliveryState reads an endpoint's state from the delivery log.
func (s *Store) EndpointDeliveryState(ctx context.Context, account, endpoint string) (subscription.DeliveryState, error) {
	var st subscription.DeliveryState
	var ok, fail, last, oauthFail uint32
	err := s.conn.QueryRow(ctx, qEndpointDeliveryState.SQL, account, endpoint).Scan(&ok, &fail, &st.Circuit, &last, &st.Rows,
		&oauthFail, &st.LastOAuthError)
	if err != nil {
		return st, fmt.Errorf("%s: %w", qEndpointDeliveryState.Name, err)
	}
	unix := func(v uint32) time.Time {
		if v == 0 {
			return time.Time{}
		}
		return time.Unix(int64(v), 0).UTC()
	}
	st.LastSuccess, st.LastFailure, st.LastActivity, st.LastOAuthFailure = unix(ok), unix(fail), unix(last), unix(oauthFail)
	return st, nil
}

// EndpointDeliveries returns the newest delivery log rows of an endpoint.
func (s *Store) EndpointDeliveries(ctx context.Context, account, endpoint string, limit int) ([]subscription.Delivery, error) {
	rows, err := s.conn.Query(ctx, qEndpointDeliveries.SQL, account, endpoint, uint64(max(limit, 0)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qEndpointDeliveries.Name, err)
	}
	defer rows.Close()
	var out []subscription.Delivery
	for rows.Next() {
		r := subscription.Delivery{AccountID: account, EndpointID: endpoint}
		var attempt, status uint16
		var dur, events uint32
		if err := rows.Scan(&r.At, &r.WebhookID, &attempt, &r.Result, &status, &dur, &r.Response, &events, &r.Circuit); err != nil {
			return nil, fmt.Errorf("%s: %w", qEndpointDeliveries.Name, err)
		}
		r.At = r.At.UTC()
		r.Attempt, r.Status, r.Duration, r.Events = int(attempt), int(status), time.Duration(dur)*time.Millisecond, int(events)
		out = append(out, r)
	}
	return out, rows.Err()
}

// FailingSince is the time of the first failed attempt after the
// endpoint's last success (zero when none).
func (s *Store) FailingSince(ctx context.Context, account, endpoint string) (time.Time, error) {
	var v uint32
	if err := s.conn.QueryRow(ctx, qEndpointFailingSince.SQL, account, endpoint, account, endpoint).Scan(&v); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", qEndpointFailingSince.Name, err)
	}
	if v == 0 {
		return time.Time{}, nil
	}
	return time.Unix(int64(v), 0).UTC(), nil
}
