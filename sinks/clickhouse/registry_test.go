package clickhouse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bouncer-mail/bouncer/internal/testenv"
	"github.com/bouncer-mail/bouncer/schemas/ddl"
)

// syntheticTime is the Date/DateTime value of the synthetic insert rows.
var syntheticTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// isSelect tells a statement that returns rows (run with Query) from one
// that does not (ALTER, CREATE: run with Exec).
func isSelect(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	return strings.HasPrefix(s, "SELECT") || strings.HasPrefix(s, "WITH") || strings.HasPrefix(s, "(")
}

// TestRegistryOnServer runs Migrate and then every registered statement on
// the ClickHouse of CLICKHOUSE_ADDR (18.16 from scripts/services).
func TestRegistryOnServer(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Addr: []string{addr}, Database: db}

	migrations, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	applied, err := Migrate(ctx, cfg)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if len(applied) != len(migrations) || len(migrations) == 0 {
		t.Fatalf("first Migrate applied %v, want all %d migrations", applied, len(migrations))
	}
	again, err := Migrate(ctx, cfg)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", again)
	}

	conn := testenv.Open(t, addr, db)
	var recorded []int
	rows, err := conn.Query(ctx, qMigrationsApplied.SQL)
	if err != nil {
		t.Fatalf("%s: %v", qMigrationsApplied.Name, err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		recorded = append(recorded, int(v))
	}
	rows.Close()
	var want []int
	for _, m := range migrations {
		want = append(want, m.Version)
	}
	if !slices.Equal(recorded, want) {
		t.Errorf("schema_migrations holds versions %v, want %v (each once)", recorded, want)
	}

	ran := map[string]bool{}
	for _, q := range Registry() {
		err := func() error {
			switch {
			case q.Insert:
				batch, err := conn.PrepareBatch(ctx, q.SQL)
				if err != nil {
					return fmt.Errorf("prepare: %w", err)
				}
				defer batch.Close()
				var row []any
				for _, c := range batch.Columns() {
					v, err := zeroValue(string(c.Type()))
					if err != nil {
						return fmt.Errorf("column %s: %w", c.Name(), err)
					}
					row = append(row, v)
				}
				if err := batch.Append(row...); err != nil {
					return fmt.Errorf("append %v: %w", row, err)
				}
				return batch.Send()
			case isSelect(q.SQL):
				rows, err := conn.Query(ctx, q.SQL, q.Sample...)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
				}
				return rows.Err()
			default:
				return conn.Exec(ctx, q.SQL, q.Sample...)
			}
		}()
		if err != nil {
			t.Errorf("%s: %v\n\tsql: %s", q.Name, err, q.SQL)
			continue
		}
		ran[q.Name] = true
	}
	t.Logf("ran %d of %d registry entries", len(ran), len(Registry()))
	var notRun []string
	for _, q := range Registry() {
		if !ran[q.Name] {
			notRun = append(notRun, q.Name)
		}
	}
	if len(notRun) > 0 {
		t.Errorf("%d of %d registry entries did not run: %s", len(notRun), len(Registry()), strings.Join(notRun, ", "))
	}
}

// zeroValue gives a Go value of ClickHouse type typ that clickhouse-go
// appends to a column of that type.
func zeroValue(typ string) (any, error) {
	if inner, ok := strings.CutPrefix(typ, "Nullable("); ok && strings.HasSuffix(inner, ")") {
		return nil, nil
	}
	if inner, ok := strings.CutPrefix(typ, "LowCardinality("); ok && strings.HasSuffix(inner, ")") {
		return zeroValue(strings.TrimSuffix(inner, ")"))
	}
	if inner, ok := strings.CutPrefix(typ, "Array("); ok && strings.HasSuffix(inner, ")") {
		elem, err := zeroValue(strings.TrimSuffix(inner, ")"))
		if err != nil {
			return nil, err
		}
		return emptySlice(elem)
	}
	switch {
	case typ == "String", strings.HasPrefix(typ, "FixedString("), strings.HasPrefix(typ, "Enum8("), strings.HasPrefix(typ, "Enum16("):
		if strings.HasPrefix(typ, "Enum") {
			// The first value of the enum: 'name' = n.
			if m := regexp.MustCompile(`'((?:[^'\\]|\\.)*)'`).FindStringSubmatch(typ); m != nil {
				return m[1], nil
			}
		}
		return "", nil
	case typ == "Date", typ == "Date32", typ == "DateTime", strings.HasPrefix(typ, "DateTime("), strings.HasPrefix(typ, "DateTime64("):
		return syntheticTime, nil
	case typ == "UInt8":
		return uint8(0), nil
	case typ == "UInt16":
		return uint16(0), nil
	case typ == "UInt32":
		return uint32(0), nil
	case typ == "UInt64":
		return uint64(0), nil
	case typ == "Int8":
		return int8(0), nil
	case typ == "Int16":
		return int16(0), nil
	case typ == "Int32":
		return int32(0), nil
	case typ == "Int64":
		return int64(0), nil
	case typ == "Float32":
		return float32(0), nil
	case typ == "Float64":
		return float64(0), nil
	case typ == "Bool":
		return false, nil
	}
	return nil, fmt.Errorf("no synthetic value for type %s: add it to zeroValue", typ)
}

// emptySlice gives an empty slice of elem's type.
func emptySlice(elem any) (any, error) {
	switch elem.(type) {
	case string:
		return []string{}, nil
	case time.Time:
		return []time.Time{}, nil
	case uint8:
		return []uint8{}, nil
	case uint16:
		return []uint16{}, nil
	case uint32:
		return []uint32{}, nil
	case uint64:
		return []uint64{}, nil
	case int8:
		return []int8{}, nil
	case int16:
		return []int16{}, nil
	case int32:
		return []int32{}, nil
	case int64:
		return []int64{}, nil
	case float32:
		return []float32{}, nil
	case float64:
		return []float64{}, nil
	case bool:
		return []bool{}, nil
	}
	return nil, fmt.Errorf("no synthetic array of %T: add it to emptySlice", elem)
}

// checkStatement is one element of the JSON list scripts/chdb-check reads.
type checkStatement struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // ddl, query or insert
	SQL  string `json:"sql"`
}

// TestRegistryOnCurrentClickHouse runs the DDL and every registered
// statement, with its sample arguments as literals, on the current
// ClickHouse engine that chdb embeds (scripts/chdb-check).
func TestRegistryOnCurrentClickHouse(t *testing.T) {
	stmts := ddlStatements(t)
	// Statements that create tables (schema_migrations) go before the rest.
	queries := Registry()
	sort.SliceStable(queries, func(i, j int) bool {
		return isCreate(queries[i].SQL) && !isCreate(queries[j].SQL)
	})
	for _, q := range queries {
		if q.Insert {
			stmts = append(stmts, checkStatement{Name: q.Name, Kind: "insert", SQL: q.SQL})
			continue
		}
		sql, err := renderSQL(q.SQL, q.Sample)
		if err != nil {
			t.Fatalf("%s: render: %v", q.Name, err)
		}
		stmts = append(stmts, checkStatement{Name: q.Name, Kind: "query", SQL: sql})
	}
	runChdbCheck(t, context.Background(), stmts)
}

// ddlStatements are the embedded migrations as chdb-check statements.
func ddlStatements(t *testing.T) []checkStatement {
	t.Helper()
	migrations, err := ddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var stmts []checkStatement
	for _, m := range migrations {
		for i, s := range m.Statements {
			stmts = append(stmts, checkStatement{Name: fmt.Sprintf("ddl %04d_%s #%d", m.Version, m.Name, i+1), Kind: "ddl", SQL: s})
		}
	}
	return stmts
}

// runChdbCheck runs statements in one chdb session (scripts/chdb-check),
// failing the test on any error; a missing chdb fails under CI=true and
// skips otherwise.
func runChdbCheck(t *testing.T, ctx context.Context, stmts []checkStatement) {
	t.Helper()
	script, err := filepath.Abs("../../scripts/chdb-check")
	if err != nil {
		t.Fatal(err)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		chdbUnavailable(t, "python3 is not on PATH")
	}
	data, err := json.MarshalIndent(stmts, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "statements.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, python, script, file)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		t.Logf("scripts/chdb-check:\n%s", out)
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		chdbUnavailable(t, "chdb is not installed (scripts/chdb-check exited 3)")
	default:
		t.Fatalf("scripts/chdb-check %s: %v\n%s", file, err, out)
	}
}

func isCreate(sql string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(sql)), "CREATE")
}

func chdbUnavailable(t *testing.T, why string) {
	t.Helper()
	msg := why + ": run `make test` (it installs chdb), or `scripts/chdb-check --install`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// renderSQL replaces the ? placeholders of sql (outside quoted strings and
// identifiers) with args as ClickHouse literals.
func renderSQL(sql string, args []any) (string, error) {
	var b strings.Builder
	n := 0
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch c {
		case '\'', '"', '`':
			// Copy the quoted part as it is: backslash escapes, doubled quotes.
			j := i + 1
			for ; j < len(sql); j++ {
				if sql[j] == '\\' {
					j++
					continue
				}
				if sql[j] == c {
					if j+1 < len(sql) && sql[j+1] == c {
						j++
						continue
					}
					break
				}
			}
			if j >= len(sql) {
				return "", fmt.Errorf("unterminated %c quote at byte %d", c, i)
			}
			b.WriteString(sql[i : j+1])
			i = j
		case '?':
			if n >= len(args) {
				return "", fmt.Errorf("more placeholders than the %d arguments", len(args))
			}
			lit, err := literal(args[n])
			if err != nil {
				return "", fmt.Errorf("argument %d: %w", n+1, err)
			}
			b.WriteString(lit)
			n++
		default:
			b.WriteByte(c)
		}
	}
	if n != len(args) {
		return "", fmt.Errorf("%d placeholders, %d arguments", n, len(args))
	}
	return b.String(), nil
}

// literal formats v as a ClickHouse SQL literal.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quoteString(x), nil
	case []byte:
		return quoteString(string(x)), nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case int:
		return strconv.FormatInt(int64(x), 10), nil
	case int8:
		return strconv.FormatInt(int64(x), 10), nil
	case int16:
		return strconv.FormatInt(int64(x), 10), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint8:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint32:
		return strconv.FormatUint(uint64(x), 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float32:
		return literal(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("float %v has no literal", x)
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case time.Time:
		return "toDateTime('" + x.UTC().Format("2006-01-02 15:04:05") + "', 'UTC')", nil
	case *time.Time:
		if x == nil {
			return "NULL", nil
		}
		return literal(*x)
	case *string:
		if x == nil {
			return "NULL", nil
		}
		return quoteString(*x), nil
	case []string:
		parts := make([]string, len(x))
		for i, s := range x {
			parts[i] = quoteString(s)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []uint32:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = strconv.FormatUint(uint64(n), 10)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []uint64:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = strconv.FormatUint(n, 10)
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			p, err := literal(e)
			if err != nil {
				return "", err
			}
			parts[i] = p
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("no literal for %T", v)
}

// quoteString quotes s for ClickHouse: backslash escapes for the backslash,
// the quote and control characters (valid on 18.16 and current releases).
func quoteString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func TestRenderSQL(t *testing.T) {
	for _, c := range []struct {
		sql  string
		args []any
		want string
	}{
		{"SELECT ?, ?", []any{"it's a \\ test\n", uint32(7)}, `SELECT 'it\'s a \\ test\n', 7`},
		{"SELECT '?', `?` , \"?\", ?", []any{int64(-1)}, "SELECT '?', `?` , \"?\", -1"},
		{"SELECT 'a''?' = ?", []any{nil}, "SELECT 'a''?' = NULL"},
		{`SELECT 'a\'?' = ?`, []any{[]string{"x", "y'"}}, `SELECT 'a\'?' = ['x', 'y\'']`},
		{"SELECT ?", []any{time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, "SELECT toDateTime('2024-01-02 03:04:05', 'UTC')"},
	} {
		got, err := renderSQL(c.sql, c.args)
		if err != nil || got != c.want {
			t.Errorf("renderSQL(%q, %v) = %q, %v; want %q", c.sql, c.args, got, err, c.want)
		}
	}
	for _, c := range []struct {
		sql  string
		args []any
	}{
		{"SELECT ?", nil},
		{"SELECT ?", []any{1, 2}},
		{"SELECT 'open ?", []any{1}},
		{"SELECT ?", []any{struct{}{}}},
	} {
		if got, err := renderSQL(c.sql, c.args); err == nil {
			t.Errorf("renderSQL(%q, %v) = %q, want an error", c.sql, c.args, got)
		}
	}
}

// TestMigrateSkipsExistingColumn: an ADD COLUMN whose column is there
// already (a migration cut short before it was recorded, run again) is
// skipped rather than failing on 18.16, which has no ADD COLUMN IF NOT EXISTS.
func TestMigrateSkipsExistingColumn(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := Migrate(ctx, Config{Addr: []string{addr}, Database: db}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	conn := testenv.Open(t, addr, db)
	stmt := "ALTER TABLE webhooks ADD COLUMN oauth_client_id String"
	if err := conn.Exec(ctx, stmt); err == nil {
		t.Fatal("adding an existing column twice succeeded on the server: the skip is not needed")
	}
	if err := execAll(ctx, conn, db, []string{stmt}); err != nil {
		t.Errorf("execAll of an ADD COLUMN whose column exists: %v", err)
	}
	if err := execAll(ctx, conn, db, []string{"ALTER TABLE webhooks ADD COLUMN bouncer_test_col String"}); err != nil {
		t.Fatalf("execAll of a new column: %v", err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'webhooks' AND name = 'bouncer_test_col'", db).Scan(&n); err != nil || n != 1 {
		t.Errorf("new column added: %d %v", n, err)
	}
}

// TestMigrateConcurrently: workers started together each migrate a fresh
// database; none of them fails on a column or table another one created a
// moment before (TestTwoWorkersOneKilled's second worker exited on "column
// with this name already exists").
func TestMigrateConcurrently(t *testing.T) {
	addr := testenv.ClickHouse(t)
	db := testenv.Database(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := Migrate(ctx, Config{Addr: []string{addr}, Database: db})
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
	}
	// recipient_history's rebuild (0021, 0022) left one table, the new one.
	conn := testenv.Open(t, addr, db)
	if got := tableNames(t, conn, db, "recipient_history%"); !slices.Equal(got, []string{"recipient_history"}) {
		t.Errorf("after concurrent Migrate: tables %v, want recipient_history alone", got)
	}
	if g := granularity(t, conn, db, "recipient_history"); g != "256" {
		t.Errorf("after concurrent Migrate: recipient_history has granularity %s, want 256", g)
	}
}
