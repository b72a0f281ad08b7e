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

// P7 when most of the backlog is held back: a lease on each key holds back
// every later event of that key, and the claim must not read the whole
// backlog to find that nothing is claimable (with several relays it would do
// so under the claim lock, again and again). It reads a bounded window, with
// index lookups only.
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
	// The first event of each key, leased for a minute.
	held, err := st.Claim(ctx, store.ClaimParams{Owner: "other", Limit: keys, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, held.Records, keys)
	_, err = st.DB().ExecContext(ctx, "ANALYZE TABLE "+st.Table())
	require.NoError(t, err)

	// Every table the statements read is read through an index; only the
	// materialized window (<derivedN>, or <unionN,M> on servers that list
	// the union's result) is scanned.
	for name, stmt := range claimStatements {
		plan := explain(t, st.DB(), stmt.sql(st), stmt.args(limit)...)
		t.Logf("%s:\n%s", name, strings.Join(plan, "\n"))
		for _, row := range plan {
			if strings.HasPrefix(row, "<") {
				continue
			}
			f := strings.Fields(row)
			require.NotContains(t, []string{"ALL", "index"}, f[1], "%s scans a table: %s", name, row)
			require.Contains(t, []string{"PRIMARY", "ix_" + st.Table() + "_unpublished", "ix_" + st.Table() + "_held"}, f[2], "%s: %s", name, row)
		}
	}

	// The rows the claim reads: the session's handler counters around a
	// claim on a connection of the test's own.
	conn, err := st.DB().Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	selects := sessionStatus(t, conn, "Com_select")
	before := sessionStatus(t, conn, "Handler_read%")
	c, err := mysql.ClaimOn(ctx, st, conn, store.ClaimParams{Owner: "test", Limit: limit, Lease: time.Minute})
	require.NoError(t, err)
	read := sessionStatus(t, conn, "Handler_read%") - before
	t.Logf("an empty claim read %d index entries and rows, for a backlog of %d", read, backlog)
	selects = sessionStatus(t, conn, "Com_select") - selects
	require.Empty(t, c.Records, "nothing is claimable")
	// Both statements run, each over a window of ClaimWindow×limit rows
	// that it reads a few times over: the index entry, the row, the probes,
	// the materialized window. The unbounded walk read 40,191 here.
	window := mysql.ClaimWindow * limit
	require.LessOrEqual(t, read, 2*8*window, "the claim read %d index entries and rows, for a backlog of %d", read, backlog)
	require.Equal(t, 2, selects, "claim reached its window's sentinel, and claimPastHeld ran")
}

// claimStatements are the claim's statements and their arguments.
var claimStatements = map[string]struct {
	sql  func(*mysql.Store) string
	args func(limit int) []any
}{
	"claim":         {mysql.ClaimSQL, mysql.ClaimArgs},
	"claimPastHeld": {mysql.ClaimPastHeldSQL, mysql.ClaimPastHeldArgs},
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

// The claims that need no look past a full window are one statement: an
// idle table, a backlog shorter than the window, a window with the limit's
// claimable rows.
func TestClaimOneStatement(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	conn, err := st.DB().Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	const limit = 100
	// claim returns the claim and the SELECT statements it ran.
	claim := func() (store.Claim, int) {
		t.Helper()
		before := sessionStatus(t, conn, "Com_select")
		c, err := mysql.ClaimOn(ctx, st, conn, store.ClaimParams{Owner: "test", Limit: limit, Lease: time.Minute})
		require.NoError(t, err)
		return c, sessionStatus(t, conn, "Com_select") - before
	}

	c, selects := claim()
	require.Empty(t, c.Records)
	require.Equal(t, 1, selects, "an idle table")

	// 50 events of 5 keys, the first of each key leased: nothing is
	// claimable, and the window of 400 pending rows is not full.
	var events []outbox.Event
	for i := range 50 {
		events = append(events, event(fmt.Sprint("held-", i%5)))
	}
	add(t, st, events...)
	held, err := st.Claim(ctx, store.ClaimParams{Owner: "other", Limit: 5, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, held.Records, 5)
	c, selects = claim()
	require.Empty(t, c.Records)
	require.Equal(t, 1, selects, "a short backlog held back")

	// 1,000 more events of 100 other keys: the window holds 350 claimable
	// rows. One claim SELECT, and the check of key order.
	events = events[:0]
	for i := range 1000 {
		events = append(events, event(fmt.Sprint("free-", i%100)))
	}
	add(t, st, events...)
	c, selects = claim()
	require.Len(t, c.Records, limit)
	require.Equal(t, 2, selects, "a window with the limit's claimable rows")
}

// The claim's join stops at the limit: with a backlog of claimable rows, the
// claim looks up (and probes) limit rows, not its window's 4×limit; the
// window itself is read from the index alone.
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
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	require.NoError(t, err)
	defer tx.Rollback()
	lookups := sessionStatus(t, conn, "Handler_read_key")
	rows, err := tx.QueryContext(ctx, mysql.ClaimSQL(st), mysql.ClaimArgs(limit)...)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	lookups = sessionStatus(t, conn, "Handler_read_key") - lookups
	t.Logf("a claim of %d rows: %d index lookups", n, lookups)
	require.Equal(t, limit, n)
	// A few lookups per row taken (by primary key, the probe): fewer than
	// the window has rows. A join that did not stop at the limit read
	// 1,202.
	require.Less(t, lookups, mysql.ClaimWindow*limit)
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
