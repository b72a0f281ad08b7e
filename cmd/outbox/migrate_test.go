package main

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
)

func TestMigrate(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			table := testenv.Table("migrate")
			db, dsn := testDB(t, dialect)
			t.Cleanup(func() {
				ctx := context.Background()
				_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+", "+table+"_claims")
				_, _ = db.ExecContext(ctx, "DELETE FROM outbox_migrations WHERE table_name = '"+table+"'")
			})
			migrate := func(args ...string) result {
				return cli(t, append(append([]string{"migrate"}, args...), "--dsn", dsn, "--table", table)...)
			}
			applied := func() []int {
				r := requireOK(t, migrate("status", "--json"))
				var out struct {
					Table      string          `json:"table"`
					Dialect    string          `json:"dialect"`
					Migrations []migrationJSON `json:"migrations"`
				}
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
				require.Equal(t, table, out.Table)
				require.Equal(t, dialect, out.Dialect)
				require.Len(t, out.Migrations, 4)
				vs := []int{}
				for _, m := range out.Migrations {
					if m.Applied {
						vs = append(vs, m.Version)
					}
				}
				return vs
			}

			require.Empty(t, applied())
			// Before the table exists, the other commands say so.
			r := cli(t, "status", "--dsn", dsn, "--table", table)
			require.Equal(t, 1, r.code)
			require.Contains(t, r.stderr, "table "+table+" does not exist; create it with 'outbox migrate up'")

			r = requireOK(t, migrate("up"))
			require.Contains(t, r.stdout, "applied 1_seed_table")
			require.Contains(t, r.stdout, "applied 2_relay_columns")
			require.Contains(t, r.stdout, "applied 3_audit")
			require.Contains(t, r.stdout, "applied 4_claims")
			require.Equal(t, []int{1, 2, 3, 4}, applied())
			require.Contains(t, requireOK(t, migrate("up")).stdout, "is up to date")
			require.Contains(t, requireOK(t, migrate("status")).stdout, "2        relay_columns  applied")
			requireOK(t, cli(t, "status", "--dsn", dsn, "--table", table))

			require.Contains(t, requireOK(t, migrate("down")).stdout, "reverted 4_claims")
			// Without its table of claims, the relay's commands say so.
			r = cli(t, "status", "--dsn", dsn, "--table", table)
			require.Equal(t, 1, r.code)
			require.Contains(t, r.stderr, "lacks its table of claims")
			require.Contains(t, requireOK(t, migrate("down")).stdout, "reverted 3_audit")
			require.Equal(t, []int{1, 2}, applied())

			require.Contains(t, requireOK(t, migrate("down")).stdout, "reverted 2_relay_columns")
			require.Equal(t, []int{1}, applied())
			// The Python services' table without the relay's columns.
			r = cli(t, "status", "--dsn", dsn, "--table", table)
			require.Equal(t, 1, r.code)
			require.Contains(t, r.stderr, "lacks the relay's columns; add them with 'outbox migrate up'")

			r = migrate("down")
			require.Equal(t, 2, r.code, "reverting version 1 drops the table: it needs --drop-table")
			require.Contains(t, r.stderr, "--drop-table")
			require.Equal(t, []int{1}, applied())
			require.Contains(t, requireOK(t, migrate("down", "--drop-table")).stdout, "reverted 1_seed_table")
			require.Empty(t, applied())
			require.Contains(t, requireOK(t, migrate("down")).stdout, "nothing to revert")
		})
	}
}

func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:1/test?sslmode=disable", "connection refused"},
		{"root@tcp(127.0.0.1:1)/test", "connection refused"},
		{"mysql://root@127.0.0.1:1/test", "connection refused"},
	} {
		r := cli(t, "status", "--dsn", tc.dsn)
		require.Equal(t, 1, r.code, "%s: %s", tc.dsn, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.dsn)
	}
	t.Run("unknown database", func(t *testing.T) {
		testenv.Postgres(t) // the server must answer to say the database is unknown
		u, err := url.Parse(testenv.PostgresURL())
		require.NoError(t, err)
		u.Path = "/no_such_db"
		r := cli(t, "status", "--dsn", u.String())
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "no_such_db")
	})
}

// migrate up on an existing table that is not an outbox table refuses, says
// what is missing, and records nothing.
func TestMigrateRefusesOtherTable(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"postgres", "mysql"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			table := testenv.Table("other")
			db, dsn := testDB(t, dialect)
			t.Cleanup(func() {
				ctx := context.Background()
				_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table+", "+table+"_claims")
				_, _ = db.ExecContext(ctx, "DELETE FROM outbox_migrations WHERE table_name = '"+table+"'")
			})
			_, err := db.ExecContext(t.Context(), "CREATE TABLE "+table+" (id INT PRIMARY KEY, name TEXT)")
			require.NoError(t, err)
			r := cli(t, "migrate", "up", "--dsn", dsn, "--table", table)
			require.Equal(t, 1, r.code, r.stderr)
			require.Contains(t, r.stderr, table+": not an outbox table: lacks the outbox column(s) aggregate_id, ")
			require.Contains(t, r.stderr, "nothing was applied")
			r = requireOK(t, cli(t, "migrate", "status", "--json", "--dsn", dsn, "--table", table))
			require.Contains(t, r.stdout, `"applied": false`)
			require.NotContains(t, r.stdout, `"applied": true`)
		})
	}
}

// On SQLite, a file named by a sqlite: DSN: the dialect's three steps go up
// and down, and the relay's commands say what a step left missing.
func TestMigrateSQLite(t *testing.T) {
	t.Parallel()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "shop.db")
	table := "event_outbox"
	migrate := func(args ...string) result {
		return cli(t, append(append([]string{"migrate"}, args...), "--dsn", dsn)...)
	}
	applied := func() []int {
		var out struct {
			Dialect    string          `json:"dialect"`
			Migrations []migrationJSON `json:"migrations"`
		}
		r := requireOK(t, migrate("status", "--json"))
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
		require.Equal(t, "sqlite", out.Dialect)
		require.Len(t, out.Migrations, 3)
		vs := []int{}
		for _, m := range out.Migrations {
			if m.Applied {
				vs = append(vs, m.Version)
			}
		}
		return vs
	}

	require.Empty(t, applied())
	r := cli(t, "status", "--dsn", dsn)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "table "+table+" does not exist; create it with 'outbox migrate up'")

	r = requireOK(t, migrate("up"))
	require.Contains(t, r.stdout, "applied 1_outbox_table")
	require.Contains(t, r.stdout, "applied 2_audit")
	require.Contains(t, r.stdout, "applied 3_claims")
	require.Equal(t, []int{1, 2, 3}, applied())
	require.Contains(t, requireOK(t, migrate("up")).stdout, "is up to date")
	require.Contains(t, requireOK(t, cli(t, "status", "--dsn", dsn)).stdout, "pending")

	require.Contains(t, requireOK(t, migrate("down")).stdout, "reverted 3_claims")
	r = cli(t, "status", "--dsn", dsn)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "lacks its table of claims")
	require.Contains(t, requireOK(t, migrate("down")).stdout, "reverted 2_audit")
	r = migrate("down")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "pass --drop-table")
	require.Contains(t, requireOK(t, migrate("down", "--drop-table")).stdout, "reverted 1_outbox_table")
	require.Empty(t, applied())
}
