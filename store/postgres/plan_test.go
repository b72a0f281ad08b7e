package postgres_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/postgres"
)

// Bounded resources: the claim and the janitor cost O(batch), not O(table): with a large
// table of published rows, their plans read the partial indexes and never
// scan the table.
func TestPlansUseIndexes(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	pool, table := st.Pool(), st.Table()
	ctx := context.Background()
	// 50,000 published rows, 200 pending ones, a few leased and parked.
	_, err := pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, topic, event_data, published_at)
		SELECT 'order', 'o-' || (g % 1000), 'order.placed.v1', 'o-' || (g % 1000), 'orders', '{"n":1}', now() - interval '1 hour'
		FROM generate_series(1, 50000) g`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, topic, event_data)
		SELECT 'order', 'o-' || (g % 100), 'order.placed.v1', 'o-' || (g % 100), 'orders', '{"n":1}' FROM generate_series(1, 200) g`)
	require.NoError(t, err)
	claimRows(t, pool, table, `SELECT id, event_key FROM `+table+` WHERE published_at IS NULL ORDER BY seq LIMIT 5`)
	_, err = pool.Exec(ctx, "ANALYZE "+table)
	require.NoError(t, err)

	plan := func(query string, args ...any) string {
		t.Helper()
		return strings.Join(explain(t, pool, st, "EXPLAIN (COSTS OFF) "+query, args...), "\n")
	}
	claim := plan(postgres.ClaimSQL(st), 100, "test", [16]byte(uuid.New()), time.Minute.Microseconds())
	t.Log("claim:\n" + claim)
	require.Contains(t, claim, "ix_"+table+"_unpublished")
	require.Contains(t, claim, "ix_"+table+"_held")
	require.Contains(t, claim, "hashed SubPlan", "live claims' keys are a hashed set")
	require.NotContains(t, strings.ReplaceAll(claim, "Seq Scan on "+migrations.ClaimsTable(table), ""), "Seq Scan")
	require.NotContains(t, claim, "Hash Join", "a hash join reads all pending rows")
	require.NotContains(t, claim, "Merge Join")
	require.NotContains(t, claim, "Materialize", "the events of ended claims are looked up by primary key")

	// The mark updates its events by primary key.
	var ids [][16]byte
	require.NoError(t, pool.QueryRow(ctx, `SELECT array_agg(id) FROM (SELECT id FROM `+table+` WHERE published_at IS NULL LIMIT 100) x`).Scan(&ids))
	mark := plan(postgres.MarkSQL(st), ids, [16]byte(uuid.New()))
	t.Log("mark:\n" + mark)
	require.Contains(t, mark, "on "+table+"_pkey")
	require.Contains(t, mark, "Index Cond: (id = ANY")
	require.Contains(t, mark, "HashSetOp Intersect")
	require.NotContains(t, strings.ReplaceAll(mark, "Seq Scan on "+migrations.ClaimsTable(table), ""), "Seq Scan")

	// The Python services' lookup indexes cover settled rows: operators' lookups of
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

// Bounded resources when most of the backlog is held back: a lease on each key holds back
// every later event of that key, and the claim must not read the whole
// backlog to find that nothing is claimable (with several relays it would do
// so under the claim lock, again and again). It reads a bounded window.
func TestClaimWalkIsBounded(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	pool, table := st.Pool(), st.Table()
	ctx := context.Background()
	const backlog, limit = 20000, 100
	_, err := pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, topic, event_data)
		SELECT 'order', 'o-' || (g % 10), 'order.placed.v1', 'o-' || (g % 10), 'orders', '{"n":1}' FROM generate_series(1, $1) g`, backlog)
	require.NoError(t, err)
	claimRows(t, pool, table, `SELECT id, event_key FROM `+table+` WHERE seq IN (SELECT min(seq) FROM `+table+` GROUP BY event_key)`)
	_, err = pool.Exec(ctx, "ANALYZE "+table)
	require.NoError(t, err)

	plan := explain(t, pool, st, "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) "+postgres.ClaimSQL(st),
		limit, "test", [16]byte(uuid.New()), time.Minute.Microseconds())
	t.Log("claim:\n" + strings.Join(plan, "\n"))
	// The walk is the scan of the pending index: what it returned plus what
	// its filter removed is what it read.
	read := -1
	for i, l := range plan {
		if !strings.Contains(l, "ix_"+table+"_unpublished") {
			continue
		}
		read = actual(t, l, "rows=")
		for _, f := range plan[i+1:] {
			if strings.Contains(f, "->") {
				break
			}
			if strings.Contains(f, "Rows Removed by Filter:") {
				read += actual(t, f, "Rows Removed by Filter: ")
			}
		}
	}
	require.GreaterOrEqual(t, read, 0, "no scan of the pending index in the plan")
	require.LessOrEqual(t, read, postgres.ClaimWindow*limit+10, "the claim read %d of %d held-back rows", read, backlog)
	require.Contains(t, plan[0], "rows=0", "nothing is claimable")
}

// claimRows records a live claim of the events that query returns (id,
// event_key), as a relay's claim would.
func claimRows(t *testing.T, pool *pgxpool.Pool, table, query string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO `+migrations.ClaimsTable(table)+` (token, owner, lease_until, event_ids, event_keys)
		SELECT gen_random_uuid(), 'other', now() + interval '1 minute', array_agg(id), array_agg(DISTINCT event_key) FROM (`+query+`) q`)
	require.NoError(t, err)
}

// explain runs an EXPLAIN in a transaction that is rolled back, after the
// statement that starts a claim's transaction (its lock and planner
// settings), and returns the plan's lines.
func explain(t *testing.T, pool *pgxpool.Pool, st *postgres.Store, query string, args ...any) []string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, postgres.ClaimLockSQL(st), postgres.LockKey(st))
	require.NoError(t, err)
	rows, err := tx.Query(ctx, query, args...)
	require.NoError(t, err)
	var lines []string
	for rows.Next() {
		var l string
		require.NoError(t, rows.Scan(&l))
		lines = append(lines, l)
	}
	require.NoError(t, rows.Err())
	return lines
}

// actual returns the number after label in an EXPLAIN ANALYZE line.
func actual(t *testing.T, line, label string) int {
	t.Helper()
	_, after, ok := strings.Cut(line, label)
	require.True(t, ok, line)
	n, err := strconv.Atoi(strings.FieldsFunc(after, func(r rune) bool { return r < '0' || r > '9' })[0])
	require.NoError(t, err, line)
	return n
}
