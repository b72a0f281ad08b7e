package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
)

func postgresTable(t *testing.T) (*sql.DB, string) {
	t.Helper()
	db := stdlib.OpenDBFromPool(testenv.Postgres(t))
	t.Cleanup(func() { db.Close() })
	table := testenv.Table("mig")
	t.Cleanup(func() {
		_, _ = db.Exec("DROP TABLE IF EXISTS " + table + ", " + migrations.ClaimsTable(table))
		_, _ = db.Exec("DELETE FROM outbox_migrations WHERE table_name = $1", table)
	})
	return db, table
}

func versions(t *testing.T, db *sql.DB, table string) []int {
	t.Helper()
	st, err := migrations.List(context.Background(), db, migrations.PostgreSQL, table)
	require.NoError(t, err)
	var vs []int
	for _, s := range st {
		if s.Applied {
			vs = append(vs, s.Version)
		}
	}
	return vs
}

// Several processes applying the migrations at once: each version runs and
// is recorded once, and applying again changes nothing.
func TestPostgresConcurrentUp(t *testing.T) {
	t.Parallel()
	db, table := postgresTable(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		// A pool each, as separate processes would have.
		other := stdlib.OpenDBFromPool(testenv.Postgres(t))
		defer other.Close()
		wg.Go(func() { errs[i] = migrations.Up(ctx, other, migrations.PostgreSQL, table) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	require.Equal(t, []int{1, 2, 3, 4}, versions(t, db, table))
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM outbox_migrations WHERE table_name = $1", table).Scan(&n))
	require.Equal(t, 4, n)
}

// Down step by step and up again, with a row of an older writer in between:
// the Python services' table keeps its rows and is adopted again.
func TestPostgresDownThenUp(t *testing.T) {
	t.Parallel()
	db, table := postgresTable(t)
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	columns := func() []string {
		return testenv.Strings(t, db, `SELECT column_name FROM information_schema.columns WHERE table_name = '`+table+`' AND column_name LIKE 'lease%' ORDER BY 1`)
	}
	claims := func() bool {
		var exists bool
		require.NoError(t, db.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, migrations.ClaimsTable(table)).Scan(&exists))
		return exists
	}
	require.Empty(t, columns(), "migration 4 drops the lease columns")
	require.True(t, claims())
	require.NoError(t, migrations.Down(ctx, db, migrations.PostgreSQL, table))
	require.Equal(t, []string{"lease_owner", "lease_token", "lease_until"}, columns(), "reverting 4 brings them back")
	require.False(t, claims())
	require.NoError(t, migrations.Down(ctx, db, migrations.PostgreSQL, table))
	require.NoError(t, migrations.Down(ctx, db, migrations.PostgreSQL, table))
	require.Equal(t, []int{1}, versions(t, db, table))
	_, err := db.Exec(`INSERT INTO ` + table + ` (aggregate_type, aggregate_id, event_type, event_key, event_data)
		VALUES ('file', 'f-1', 'file.v1', 'f-1', '{"topic":"files"}')`)
	require.NoError(t, err, "the Python services' table takes their rows")
	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	var seq int64
	require.NoError(t, db.QueryRow("SELECT seq FROM "+table).Scan(&seq))
	require.Positive(t, seq, "older rows get a seq")
	for range 4 {
		require.NoError(t, migrations.Down(ctx, db, migrations.PostgreSQL, table))
	}
	require.Empty(t, versions(t, db, table))
	require.Error(t, migrations.Up(ctx, db, migrations.PostgreSQL, "bad name"), "table names are validated")
}

// Migration 2 numbers the rows already in the table in write order, by
// created_at and then id, not in their physical order, which an UPDATE (a
// retry by an older relay) changes; rows written afterwards come after them.
func TestPostgresSeqInWriteOrder(t *testing.T) {
	t.Parallel()
	db, table := postgresTable(t)
	ctx := context.Background()
	testenv.SeedTable(t, ctx, db, migrations.PostgreSQL, table)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Written in created_at order; the last two share a created_at, as the
	// rows of one transaction do, and keep their insert order although
	// their ids sort the other way.
	written := []string{
		"00000000-0000-4000-8000-000000000001",
		"00000000-0000-4000-8000-000000000002",
		"00000000-0000-4000-8000-000000000003",
		"00000000-0000-4000-8000-000000000005",
		"00000000-0000-4000-8000-000000000004",
	}
	for i, id := range written {
		created := base.Add(time.Duration(min(i, 3)) * time.Minute)
		_, err := db.ExecContext(ctx, `INSERT INTO `+table+` (id, aggregate_type, aggregate_id, event_type, event_key, event_data, created_at)
			VALUES ($1, 'order', 'o-1', 'order.v1', 'o-1', '{"topic":"orders"}', $2)`, id, created)
		require.NoError(t, err)
	}
	// The oldest rows were retried: their new versions are stored last.
	_, err := db.ExecContext(ctx, `UPDATE `+table+` SET retry_count = 1 WHERE created_at < $1`, base.Add(2*time.Minute))
	require.NoError(t, err)
	require.NotEqual(t, written, testenv.Strings(t, db, `SELECT id FROM `+table),
		"physical order differs from write order")

	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	require.Equal(t, written, testenv.Strings(t, db, `SELECT id FROM `+table+` ORDER BY seq`))
	_, err = db.ExecContext(ctx, `INSERT INTO `+table+` (id, aggregate_type, aggregate_id, event_type, event_key, event_data, created_at)
		VALUES ('00000000-0000-4000-8000-000000000000', 'order', 'o-1', 'order.v1', 'o-1', '{}', $1)`, base)
	require.NoError(t, err)
	var last string
	require.NoError(t, db.QueryRow(`SELECT id FROM `+table+` ORDER BY seq DESC LIMIT 1`).Scan(&last))
	require.Equal(t, "00000000-0000-4000-8000-000000000000", last, "a row written afterwards comes after them")
}

// Up refuses an existing table that is not an outbox table before it
// changes or records anything.
func TestPostgresRefusesOtherTables(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, create, want string
	}{
		{"unrelated", "CREATE TABLE {t} (id INT PRIMARY KEY, name TEXT)",
			"lacks the outbox column(s) aggregate_id, aggregate_type, event_type, event_data, event_key, created_at, published_at, retry_count, last_error"},
		{"some relay columns", "ALTER TABLE {t} ADD COLUMN seq BIGINT, ADD COLUMN topic TEXT",
			"has seq but lacks the relay's column(s) headers, next_attempt_at, parked_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, table := postgresTable(t)
			ctx := context.Background()
			if strings.HasPrefix(tc.create, "ALTER") {
				testenv.SeedTable(t, ctx, db, migrations.PostgreSQL, table)
			}
			_, err := db.ExecContext(ctx, strings.ReplaceAll(tc.create, "{t}", table))
			require.NoError(t, err)
			before := testenv.Strings(t, db, `SELECT column_name FROM information_schema.columns WHERE table_name = '`+table+`' ORDER BY ordinal_position`)
			err = migrations.Up(ctx, db, migrations.PostgreSQL, table)
			require.ErrorIs(t, err, migrations.ErrNotOutboxTable)
			require.ErrorContains(t, err, table+": not an outbox table: "+tc.want+"; nothing was applied")
			require.Empty(t, versions(t, db, table), "no version recorded")
			require.Equal(t, before, testenv.Strings(t, db, `SELECT column_name FROM information_schema.columns WHERE table_name = '`+table+`' ORDER BY ordinal_position`))
		})
	}
}
