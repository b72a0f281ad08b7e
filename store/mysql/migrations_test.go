package mysql_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
)

// mysqlTable returns a database and a fresh table name whose table and
// version rows are dropped at the end of the test.
func mysqlTable(t *testing.T) (*sql.DB, string, context.Context) {
	t.Helper()
	db := testenv.MySQL(t)
	table := testenv.Table("mig")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(func() {
		cancel()
		_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table+", "+migrations.ClaimsTable(table))
		_, _ = db.ExecContext(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = ?", table)
	})
	return db, table, ctx
}

func applied(t *testing.T, ctx context.Context, db *sql.DB, table string) []int {
	t.Helper()
	st, err := migrations.List(ctx, db, migrations.MySQL, table)
	require.NoError(t, err)
	var vs []int
	for _, s := range st {
		if s.Applied {
			vs = append(vs, s.Version)
		}
	}
	return vs
}

// indexColumns returns the columns of index in order, "" if it does not exist.
func indexColumns(t *testing.T, ctx context.Context, db *sql.DB, table, index string) string {
	t.Helper()
	var cols sql.NullString
	require.NoError(t, db.QueryRowContext(ctx, `SELECT GROUP_CONCAT(column_name ORDER BY seq_in_index)
		FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?`,
		table, index).Scan(&cols))
	return cols.String
}

func hasColumn(t *testing.T, ctx context.Context, db *sql.DB, table, column string) bool {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ? AND column_name = ?`, table, column).Scan(&n))
	return n == 1
}

func requireRelaySchema(t *testing.T, ctx context.Context, db *sql.DB, table string) {
	t.Helper()
	require.Equal(t, []int{1, 2, 3, 4}, applied(t, ctx, db, table))
	for _, c := range []string{"seq", "topic", "headers", "next_attempt_at", "parked_at", "held"} {
		require.True(t, hasColumn(t, ctx, db, table, c), "column %s", c)
	}
	for _, c := range []string{"lease_owner", "lease_token", "lease_until"} {
		require.False(t, hasColumn(t, ctx, db, table, c), "column %s, which migration 4 drops", c)
	}
	require.True(t, hasColumn(t, ctx, db, migrations.ClaimsTable(table), "event_ids"))
	require.Equal(t, "published_at,parked_at,seq", indexColumns(t, ctx, db, table, "ix_"+table+"_unpublished"))
	require.Equal(t, "published_at,event_key,held,seq", indexColumns(t, ctx, db, table, "ix_"+table+"_held"))
	require.Equal(t, "aggregate_type,aggregate_id", indexColumns(t, ctx, db, table, "ix_"+table+"_aggregate"))
	require.Equal(t, "event_type", indexColumns(t, ctx, db, table, "ix_"+table+"_event_type"))
}

func TestMySQLUpIsIdempotent(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	requireRelaySchema(t, ctx, db, table)
}

// DDL commits implicitly on MySQL: a step that ran but whose version was
// not recorded (the process stopped in between) runs again without error.
func TestMySQLStepsRerun(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	ms := mustMigrations(t)
	require.Len(t, ms, 4)
	// The guards keep session state (a user variable, a prepared
	// statement), so the statements run on one connection, as Up runs them.
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	run := func(m migrations.Migration, up bool) {
		stmts, err := m.SQL(table, up)
		require.NoError(t, err)
		for range 2 {
			for _, q := range stmts {
				_, err := conn.ExecContext(ctx, q)
				require.NoError(t, err, q)
			}
		}
	}
	run(ms[0], true)
	run(ms[1], true)
	run(ms[2], true)
	run(ms[3], true)
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	requireRelaySchema(t, ctx, db, table)
	run(ms[3], false)
	require.True(t, hasColumn(t, ctx, db, table, "lease_token"))
	run(ms[1], false)
	require.False(t, hasColumn(t, ctx, db, table, "seq"))
}

// Down then up again, with a row written by an older writer in between: the
// Python services' table is adopted and its rows keep working.
func TestMySQLDownThenUp(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))

	require.NoError(t, migrations.Down(ctx, db, migrations.MySQL, table)) // 4: the claims table, back to leases
	require.Equal(t, []int{1, 2, 3}, applied(t, ctx, db, table))
	require.True(t, hasColumn(t, ctx, db, table, "lease_token"))
	require.False(t, hasColumn(t, ctx, db, migrations.ClaimsTable(table), "token"))
	require.NoError(t, migrations.Down(ctx, db, migrations.MySQL, table)) // 3: this table's audit records
	require.Equal(t, []int{1, 2}, applied(t, ctx, db, table))
	require.NoError(t, migrations.Down(ctx, db, migrations.MySQL, table))
	require.Equal(t, []int{1}, applied(t, ctx, db, table))
	require.False(t, hasColumn(t, ctx, db, table, "seq"))
	require.False(t, hasColumn(t, ctx, db, table, "held"))
	require.Equal(t, "published_at,created_at", indexColumns(t, ctx, db, table, "ix_"+table+"_unpublished"))
	require.Empty(t, indexColumns(t, ctx, db, table, "ix_"+table+"_held"))

	require.NoError(t, migrations.Down(ctx, db, migrations.MySQL, table))
	require.Empty(t, applied(t, ctx, db, table))
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables
		WHERE table_schema = DATABASE() AND table_name = ?`, table).Scan(&n))
	require.Zero(t, n, "down from version 1 drops the table")

	stmts, err := mustMigrations(t)[0].SQL(table, true)
	require.NoError(t, err)
	for _, q := range stmts {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, event_data)
		VALUES ('order', 'o-1', 'order.created.v1', 'o-1', '{"topic":"orders"}')`)
	require.NoError(t, err)

	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	requireRelaySchema(t, ctx, db, table)
	var seq int64
	var headers string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT seq, headers FROM "+table).Scan(&seq, &headers))
	require.Equal(t, int64(1), seq)
	require.Equal(t, "{}", headers)
}

func mustMigrations(t *testing.T) []migrations.Migration {
	t.Helper()
	ms, err := migrations.MySQL.Migrations()
	require.NoError(t, err)
	return ms
}

func TestMySQLConcurrentUp(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = migrations.Up(ctx, db, migrations.MySQL, table) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	requireRelaySchema(t, ctx, db, table)
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox_migrations WHERE table_name = ?", table).Scan(&n))
	require.Equal(t, 4, n, "each version recorded once")
}

// Migration 2 numbers the rows already in the table in write order, by
// created_at and then id, not in primary-key (UUID) order; rows written
// afterwards come after them.
func TestMySQLSeqInWriteOrder(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	testenv.SeedTable(t, ctx, db, migrations.MySQL, table)
	// IDs sort opposite to created_at; two rows share a created_at and are
	// told apart by id.
	for i, id := range []string{
		"ffffffff-0000-4000-8000-000000000000",
		"eeeeeeee-0000-4000-8000-000000000000",
		"cccccccc-0000-4000-8000-000000000000",
		"dddddddd-0000-4000-8000-000000000000",
		"bbbbbbbb-0000-4000-8000-000000000000",
	} {
		_, err := db.ExecContext(ctx, `INSERT INTO `+table+` (id, aggregate_type, aggregate_id, event_type, event_key, event_data, created_at)
			VALUES (?, 'order', 'o-1', 'order.v1', 'o-1', '{"topic":"orders"}', TIMESTAMP '2026-01-01 00:00:00' + INTERVAL ? MINUTE)`, id, min(i, 3))
		require.NoError(t, err)
	}
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	requireRelaySchema(t, ctx, db, table)
	require.Equal(t, testenv.Strings(t, db, `SELECT id FROM `+table+` ORDER BY created_at, id`), testenv.Strings(t, db, `SELECT id FROM `+table+` ORDER BY seq`))
	_, err := db.ExecContext(ctx, `INSERT INTO `+table+` (id, aggregate_type, aggregate_id, event_type, event_key, event_data)
		VALUES ('00000000-0000-4000-8000-000000000000', 'order', 'o-1', 'order.v1', 'o-1', '{}')`)
	require.NoError(t, err)
	var last string
	require.NoError(t, db.QueryRowContext(ctx, `SELECT id FROM `+table+` ORDER BY seq DESC LIMIT 1`).Scan(&last))
	require.Equal(t, "00000000-0000-4000-8000-000000000000", last, "a row written afterwards comes after them")
}

// Up refuses an existing table that is not an outbox table before it
// changes or records anything: MySQL commits DDL at once, and a step that
// failed halfway would leave the table changed and version 1 recorded.
func TestMySQLRefusesOtherTables(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, create, want string
	}{
		{"unrelated", "CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)",
			"lacks the outbox column(s) aggregate_id, aggregate_type, event_type, event_data, event_key, created_at, published_at, retry_count, last_error"},
		{"no outbox index", "", "lacks the outbox index ix_{t}_unpublished"},
		{"some relay columns", "ALTER TABLE {t} ADD COLUMN topic VARCHAR(249), ADD COLUMN headers LONGTEXT",
			"has the relay's column(s) topic, headers but not seq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, table, ctx := mysqlTable(t)
			if tc.create == "" || strings.HasPrefix(tc.create, "ALTER") {
				testenv.SeedTable(t, ctx, db, migrations.MySQL, table)
			}
			switch {
			case tc.create == "":
				_, err := db.ExecContext(ctx, "ALTER TABLE "+table+" DROP INDEX ix_"+table+"_unpublished")
				require.NoError(t, err)
			default:
				_, err := db.ExecContext(ctx, strings.ReplaceAll(tc.create, "{t}", table))
				require.NoError(t, err)
			}
			before := columns(t, ctx, db, table)
			err := migrations.Up(ctx, db, migrations.MySQL, table)
			require.ErrorIs(t, err, migrations.ErrNotOutboxTable)
			require.ErrorContains(t, err, table+": not an outbox table: "+strings.ReplaceAll(tc.want, "{t}", table)+"; nothing was applied")
			require.Empty(t, applied(t, ctx, db, table), "no version recorded")
			require.Equal(t, before, columns(t, ctx, db, table), "the table is unchanged")
		})
	}
}

// A step that fails halfway leaves the table unlocked: its session, which
// locked the table while numbering the rows, is not returned to the pool.
func TestMySQLFailedStepUnlocks(t *testing.T) {
	t.Parallel()
	db, table, ctx := mysqlTable(t)
	testenv.SeedTable(t, ctx, db, migrations.MySQL, table)
	_, err := db.ExecContext(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_data)
		VALUES ('order', 'o-1', 'order.v1', '{}')`)
	require.NoError(t, err)
	// The numbering of the rows, which runs with the table locked, fails.
	_, err = db.ExecContext(ctx, "CREATE TRIGGER "+table+"_no_update BEFORE UPDATE ON "+table+
		" FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no updates'")
	require.NoError(t, err)
	require.ErrorContains(t, migrations.Up(ctx, db, migrations.MySQL, table), "no updates")
	// Another process's writer.
	conn, err := testenv.MySQL(t).Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = 1")
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_data)
		VALUES ('order', 'o-1', 'order.v1', '{}')`)
	require.NoError(t, err, "the table is not locked")
}

// columns returns the table's columns in order.
func columns(t *testing.T, ctx context.Context, db *sql.DB, table string) []string {
	t.Helper()
	var cols sql.NullString
	require.NoError(t, db.QueryRowContext(ctx, `SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position)
		FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`, table).Scan(&cols))
	return strings.Split(cols.String, ",")
}
