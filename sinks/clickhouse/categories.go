package clickhouse

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Categories lists the account's categories, those its events carry,
// sorted, that start with prefix (all of them when prefix is empty). The
// days with marks or builds (stats_marks, stats_daily) are read like the
// stats (rollups where a build covers the day, else the events table); an
// account without any is read from the events table alone. So events
// stored before the rollups existed are listed once bouncer rollups
// rebuild has built their days, or while the account has no marks at all.
func (s *Store) Categories(ctx context.Context, account, prefix string) ([]string, error) {
	var first, last uint32
	var n uint64
	if err := s.conn.QueryRow(ctx, qCategoriesSpan.SQL, account, account).Scan(&first, &last, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", qCategoriesSpan.Name, err)
	}
	var names []string
	if n == 0 {
		if err := collect(ctx, s.conn, qCategoriesScan, &names, account, prefix); err != nil {
			return nil, err
		}
		sort.Strings(names)
		return names, nil
	}
	m, err := s.countStats(ctx, countsQuery{account: account, by: "all", dim: dimCategory, all: true,
		from: dayTime(first), to: dayTime(last + 1)})
	if err != nil {
		return nil, err
	}
	for k := range m {
		if strings.HasPrefix(k.key, prefix) {
			names = append(names, k.key)
		}
	}
	sort.Strings(names)
	return names, nil
}

var (
	// The first and last day (day numbers) of an account's marks and
	// builds, and how many there are. Arguments: account (twice).
	qCategoriesSpan = register(Query{Name: "categories.span",
		SQL: "SELECT toUInt32(min(d)), toUInt32(max(d)), count() FROM (" +
			"SELECT day AS d FROM stats_marks WHERE account_id = ? UNION ALL " +
			"SELECT day AS d FROM stats_daily WHERE account_id = ? AND dim = 'build')",
		Sample: []any{"acme", "acme"}})

	// The categories of an account's events that start with a prefix, read
	// from the events table. Arguments: account, prefix.
	qCategoriesScan = register(Query{Name: "categories.scan",
		SQL: "SELECT DISTINCT category FROM events ARRAY JOIN categories AS category " +
			"WHERE account_id = ? AND startsWith(category, ?)",
		Sample: []any{"acme", "news"}})
)
