package migrations_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/migrations"
)

// seed creates table as the seed's Python services do: migration 1's
// statements, with no version recorded.
func seed(t *testing.T, ctx context.Context, db *sql.DB, d migrations.Dialect, table string) {
	t.Helper()
	ms, err := d.Migrations()
	require.NoError(t, err)
	stmts, err := ms[0].SQL(table, true)
	require.NoError(t, err)
	for _, q := range stmts {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
}

// ids returns the first column of query's rows.
func ids(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		out = append(out, id)
	}
	require.NoError(t, rows.Err())
	return out
}
