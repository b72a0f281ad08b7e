package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/postgres"
)

// P7: the claim and the janitor cost O(batch), not O(table): with a large
// table of published rows, their plans read the partial indexes and never
// scan the table.
func TestPlansUseIndexes(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	ctx := context.Background()
	table := testenv.Table("outbox_plan")
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	require.NoError(t, migrations.Up(ctx, db, migrations.PostgreSQL, table))
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table)
		_, _ = pool.Exec(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = $1", table)
	})
	// 50,000 published rows, 200 pending ones, a few leased and parked.
	_, err := pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, topic, event_data, published_at)
		SELECT 'order', 'o-' || (g % 1000), 'order.placed.v1', 'o-' || (g % 1000), 'orders', '{"n":1}', now() - interval '1 hour'
		FROM generate_series(1, 50000) g`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, topic, event_data)
		SELECT 'order', 'o-' || (g % 100), 'order.placed.v1', 'o-' || (g % 100), 'orders', '{"n":1}' FROM generate_series(1, 200) g`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE `+table+` SET lease_token = gen_random_uuid(), lease_until = now() + interval '1 minute'
		WHERE seq IN (SELECT seq FROM `+table+` WHERE published_at IS NULL ORDER BY seq LIMIT 5)`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "ANALYZE "+table)
	require.NoError(t, err)

	st, err := postgres.New(pool, postgres.Config{Table: table})
	require.NoError(t, err)
	plan := func(query string, args ...any) string {
		t.Helper()
		rows, err := pool.Query(ctx, "EXPLAIN (COSTS OFF) "+query, args...)
		require.NoError(t, err)
		var lines []string
		for rows.Next() {
			var l string
			require.NoError(t, rows.Scan(&l))
			lines = append(lines, l)
		}
		require.NoError(t, rows.Err())
		return strings.Join(lines, "\n")
	}
	claim := plan(postgres.ClaimSQL(st), 100, "test", [16]byte(uuid.New()), time.Minute.Microseconds())
	t.Log("claim:\n" + claim)
	require.Contains(t, claim, "ix_"+table+"_unpublished")
	require.Contains(t, claim, "ix_"+table+"_held")
	require.NotContains(t, claim, "Seq Scan")

	// The seed's lookup indexes cover settled rows: operators' lookups of
	// published events by aggregate or type (replay, audit) use them.
	for name, query := range map[string]string{
		"aggregate":  `SELECT id FROM ` + table + ` WHERE published_at IS NOT NULL AND aggregate_type = 'order' AND aggregate_id = 'o-7'`,
		"event_type": `SELECT id FROM ` + table + ` WHERE published_at IS NOT NULL AND event_type = 'order.shipped.v1'`,
	} {
		p := plan(query)
		t.Log(name + ":\n" + p)
		require.Contains(t, p, "ix_"+table+"_"+name)
	}

	janitor := plan(postgres.DeletePublishedSQL(st), time.Hour.Microseconds(), 1000)
	t.Log("janitor:\n" + janitor)
	require.Contains(t, janitor, "ix_"+table+"_published")
	require.NotContains(t, janitor, "Seq Scan")
}
