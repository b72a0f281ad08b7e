package mysql_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
)

// Bounded resources when most of the backlog is held back: a claim on the first event of
// each key holds back every later event of that key, and the claim must not
// read the whole backlog to find that nothing is claimable (with several
// relays it would do so under the claim lock, again and again). It reads a
// bounded window, with index lookups only.
func TestClaimWalkIsBounded(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	const backlog, keys, limit = 20000, 10, 100
	events := make([]outbox.Event, backlog)
	for i := range events {
		events[i] = event(fmt.Sprint("o-", i%keys))
	}
	add(t, st, events...)
	held, err := st.Claim(ctx, store.ClaimParams{Owner: "other", Limit: keys, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, held.Records, keys)
	_, err = st.DB().ExecContext(ctx, "ANALYZE TABLE "+st.Table())
	require.NoError(t, err)

	// Every table the window reads is read through an index.
	plan := explain(t, st.DB(), mysql.WindowSQL(st), limit)
	t.Logf("window:\n%s", strings.Join(plan, "\n"))
	for _, row := range plan {
		f := strings.Fields(row)
		require.NotContains(t, []string{"ALL", "index"}, f[1], "the window scans a table: %s", row)
		require.Contains(t, []string{"PRIMARY", "ix_" + st.Table() + "_unpublished", "ix_" + st.Table() + "_held"}, f[2], row)
	}

	// The rows the claim reads: the session's handler counters around a
	// claim on a connection of the test's own.
	conn, err := st.DB().Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	before := sessionStatus(t, conn, "Handler_read%")
	c, err := mysql.ClaimOn(ctx, st, conn, store.ClaimParams{Owner: "test", Limit: limit, Lease: time.Minute})
	require.NoError(t, err)
	read := sessionStatus(t, conn, "Handler_read%") - before
	t.Logf("an empty claim read %d index entries and rows, for a backlog of %d", read, backlog)
	require.Empty(t, c.Records, "nothing is claimable")
	// The window's rows, each read a few times over: the index entry, the
	// row, the probe. An unbounded walk read 40,191 here.
	require.LessOrEqual(t, read, 8*mysql.ClaimWindow*limit, "the claim read %d index entries and rows, for a backlog of %d", read, backlog)
}

// explain returns the rows of EXPLAIN query as "table type key Extra" lines.
func explain(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.QueryContext(testCtx(t), "EXPLAIN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var lines []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		col := func(name string) string {
			for i, c := range cols {
				if c == name && vals[i].Valid {
					return vals[i].String
				}
			}
			return "-"
		}
		lines = append(lines, strings.Join([]string{col("table"), col("type"), col("key"), col("Extra")}, " "))
	}
	require.NoError(t, rows.Err())
	return lines
}

// With nothing held, the claim reads about limit rows of a long claimable
// backlog, not its whole window.
func TestClaimStopsEarly(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	const limit = 100
	var events []outbox.Event
	for i := range 2000 {
		events = append(events, event(fmt.Sprint("k", i%100)))
	}
	add(t, st, events...)

	conn, err := st.DB().Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	lookups := sessionStatus(t, conn, "Handler_read_key")
	c, err := mysql.ClaimOn(ctx, st, conn, store.ClaimParams{Owner: "test", Limit: limit, Lease: time.Minute})
	require.NoError(t, err)
	lookups = sessionStatus(t, conn, "Handler_read_key") - lookups
	t.Logf("a claim of %d rows: %d index lookups", len(c.Records), lookups)
	require.Len(t, c.Records, limit)
	// A few lookups per row taken (the row, the probe, the fetch): fewer
	// than a window of ClaimWindow×limit rows would cost.
	require.Less(t, lookups, 4*limit)
}

// sessionStatus returns the sum of the session's status counters whose
// names are LIKE pattern.
func sessionStatus(t *testing.T, conn *sql.Conn, pattern string) int {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), "SHOW SESSION STATUS LIKE '"+pattern+"'")
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var name string
		var v int
		require.NoError(t, rows.Scan(&name, &v))
		n += v
	}
	require.NoError(t, rows.Err())
	return n
}
