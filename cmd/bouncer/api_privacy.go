package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/bouncer-mail/bouncer/api"
	"github.com/bouncer-mail/bouncer/enrich"
	"github.com/bouncer-mail/bouncer/internal/csvlist"
	"github.com/bouncer-mail/bouncer/pipeline"
	"github.com/bouncer-mail/bouncer/sinks/clickhouse"
)

var _ api.PrivacyStore = apiStore{}

// eraseSource is the source of the list removals an erasure announces.
const eraseSource = "erase"

// eraseAddress erases one normalised address of an account: it announces
// the removal of each of its list entries on the change log (when there is
// one), so workers' indexes and mirroring senders drop it, then deletes its
// rows from every table and stores the record. Announcing first means a
// failure leaves ClickHouse still holding the address (erase again), never
// an index that still suppresses an address ClickHouse no longer has.
func eraseAddress(ctx context.Context, st *clickhouse.Store, changes pipeline.ChangePublisher, account, emailNorm, requestedBy string, opt clickhouse.EraseOptions, now time.Time) (api.Erasure, error) {
	if changes != nil {
		keys, err := st.SuppressionKeys(ctx, account, emailNorm)
		if err != nil {
			return api.Erasure{}, err
		}
		var rows []pipeline.SuppressionChange
		for _, k := range keys {
			rows = append(rows, pipeline.SuppressionChange{AccountID: account, List: k.List, GroupID: k.GroupID,
				EmailNorm: emailNorm, Email: emailNorm, At: now, Deleted: true, Source: eraseSource})
		}
		if len(rows) > 0 {
			if err := changes.PublishChanges(ctx, rows); err != nil {
				return api.Erasure{}, fmt.Errorf("erase: announce the list removals: %w (nothing was deleted; erase again)", err)
			}
		}
	}
	tables, skipped, err := st.Erase(ctx, account, emailNorm, opt)
	if err != nil {
		return api.Erasure{}, err
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return api.Erasure{}, err
	}
	rec := clickhouse.Erasure{AccountID: account, ID: hex.EncodeToString(id[:]), EmailSHA256: clickhouse.EmailSHA256(emailNorm),
		RequestedBy: requestedBy, At: now.UTC().Truncate(time.Second), Tables: tables}
	if err := st.WriteErasure(ctx, rec); err != nil {
		return api.Erasure{}, fmt.Errorf("erase: the address is erased but the record was not stored: %w (erase again to record it)", err)
	}
	out := apiErasure(rec)
	out.Skipped = skipped
	return out, nil
}

func apiErasure(e clickhouse.Erasure) api.Erasure {
	out := api.Erasure{ID: e.ID, EmailSHA256: e.EmailSHA256, RequestedBy: e.RequestedBy, At: e.At}
	for _, t := range e.Tables {
		out.Tables = append(out.Tables, api.ErasedTable{Table: t.Table, Rows: t.Rows})
	}
	return out
}

func (a apiStore) Erase(ctx context.Context, account, emailNorm, requestedBy string) (api.Erasure, error) {
	return eraseAddress(ctx, a.s, a.changes, account, emailNorm, requestedBy, clickhouse.EraseOptions{}, time.Now())
}

func (a apiStore) Erasures(ctx context.Context, account string, offset, limit uint64) ([]api.Erasure, error) {
	es, err := a.s.Erasures(ctx, account, offset, limit)
	out := make([]api.Erasure, len(es))
	for i, e := range es {
		out[i] = apiErasure(e)
	}
	return out, err
}

func (a apiStore) ExportList(ctx context.Context, account, list string, group int64, fn func(csvlist.Row) error) error {
	return a.s.EachSuppression(ctx, account, list, group, 0, func(s clickhouse.Suppression) error {
		return fn(csvlist.Row{Email: s.Email, EmailNorm: s.EmailNorm, Created: s.Created, Reason: s.Reason, Status: s.Status})
	})
}

var (
	importClassifierOnce sync.Once
	importClassifier     *enrich.Classifier
	importClassifierErr  error
)

// ImportList writes the rows in one insert (all or none in ClickHouse),
// then announces them on the change log.
func (a apiStore) ImportList(ctx context.Context, account, list string, group int64, rows []csvlist.Row) error {
	var classifier *enrich.Classifier
	if list == pipeline.ListBounces || list == pipeline.ListBlocks {
		importClassifierOnce.Do(func() { importClassifier, importClassifierErr = enrich.New() })
		if importClassifierErr != nil {
			return importClassifierErr
		}
		classifier = importClassifier
	}
	changes := make([]pipeline.SuppressionChange, len(rows))
	for i, r := range rows {
		changes[i] = pipeline.SuppressionChange{AccountID: account, List: list, GroupID: group, EmailNorm: r.EmailNorm, Email: r.Email,
			At: r.Created, Reason: r.Reason, Status: r.Status, Source: importSource}
		classifyImported(classifier, &changes[i])
	}
	if err := a.s.WriteSuppressions(ctx, changes); err != nil {
		return err
	}
	if a.changes != nil {
		return a.changes.PublishChanges(ctx, changes)
	}
	return nil
}
