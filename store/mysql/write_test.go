package mysql_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
)

func event(key string) outbox.Event {
	return outbox.Event{Topic: "orders", AggregateType: "order", AggregateID: key, EventType: "order.created.v1",
		Payload: []byte(fmt.Sprintf(`{"key":%q}`, key))}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func add(t *testing.T, st *mysql.Store, events ...outbox.Event) {
	t.Helper()
	ctx := testCtx(t)
	tx, err := st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, events...))
	require.NoError(t, tx.Commit())
}

// A business transaction that writes events is never blocked by a relay in
// the middle of a claim: the claim reads its window of pending rows without
// locking (and its rows by primary key, also without locking), so it takes
// no gap or next-key locks, not even at REPEATABLE READ (MySQL's default). A
// claim that walked the pending index with a locking read would, at
// REPEATABLE READ, lock the range up to its end and make every insert of a
// new pending row wait for the claim to commit.
func TestClaimDoesNotBlockWriters(t *testing.T) {
	t.Parallel()
	for _, level := range []sql.IsolationLevel{sql.LevelReadCommitted, sql.LevelRepeatableRead} {
		t.Run(fmt.Sprint(level), func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			ctx := testCtx(t)
			var backlog []outbox.Event
			for i := range 200 {
				backlog = append(backlog, event(fmt.Sprint("k", i%20)))
			}
			add(t, st, backlog...)

			claim, err := st.DB().BeginTx(ctx, &sql.TxOptions{Isolation: level})
			require.NoError(t, err)
			defer claim.Rollback()
			rows, err := claim.QueryContext(ctx, mysql.WindowSQL(st), 1000)
			require.NoError(t, err)
			n := 0
			for rows.Next() {
				n++
			}
			require.NoError(t, rows.Err())
			require.Equal(t, 200, n, "the window holds every pending row")

			// The writer gives up after 1 s instead of the default 50 s.
			conn, err := st.DB().Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			_, err = conn.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1")
			require.NoError(t, err)
			began := time.Now()
			tx, err := conn.BeginTx(ctx, nil)
			require.NoError(t, err)
			err = st.AddTx(ctx, tx, event("k1"), event("fresh"))
			if err == nil {
				err = tx.Commit()
			} else {
				_ = tx.Rollback()
			}
			took := time.Since(began)
			t.Logf("AddTx+commit at %s during a claim: %v, err=%v", level, took, err)
			require.NoError(t, err)
			require.Less(t, took, 500*time.Millisecond, "want well under 100 ms on an idle server")
		})
	}
}

// A call too large for one statement is split, and a failure in a later
// statement takes the earlier ones back: the call writes all or nothing.
func TestAddTxLargeCall(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	const n = 8200 // more than the 8191 rows of one statement
	events := make([]outbox.Event, n)
	for i := range events {
		events[i] = event(fmt.Sprint("k", i%7))
		events[i].ID = outbox.NewID()
	}

	bad := append([]outbox.Event(nil), events...)
	bad[n-1].ID = bad[0].ID // fails in the second statement
	tx, err := st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	require.Error(t, st.AddTx(ctx, tx, bad...))
	require.NoError(t, tx.Commit())
	stats, err := st.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, stats.Pending, "the failed call wrote nothing")

	add(t, st, events...)
	c, err := st.Claim(ctx, store.ClaimParams{Owner: "test", Limit: n, Lease: time.Minute})
	require.NoError(t, err)
	require.Len(t, c.Records, n)
	for i, r := range c.Records {
		require.Equal(t, events[i].ID, r.ID, "seq follows the call's order")
	}
	got, err := st.MarkPublished(ctx, c.Token, []uuid.UUID{events[0].ID, events[n-1].ID})
	require.NoError(t, err)
	require.Equal(t, 2, got)
}

// A pending row that another transaction holds locked (a business
// transaction that ran SELECT ... FOR UPDATE on it) neither stops the claim
// nor is passed by the later rows of its key: the claim's reads lock
// nothing, so it takes the row in its place.
func TestClaimReadsLockedRows(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := testCtx(t)
	a1, a2, b1 := event("a"), event("a"), event("b")
	for _, e := range []*outbox.Event{&a1, &a2, &b1} {
		e.ID = outbox.NewID()
	}
	add(t, st, a1, a2, b1)

	lock, err := st.DB().BeginTx(ctx, nil)
	require.NoError(t, err)
	defer lock.Rollback()
	_, err = lock.ExecContext(ctx, "SELECT id FROM "+st.Table()+" WHERE id = ? FOR UPDATE", a1.ID.String())
	require.NoError(t, err)
	c, err := st.Claim(ctx, store.ClaimParams{Owner: "test", Limit: 10, Lease: time.Minute})
	require.NoError(t, err)
	ids := make([]uuid.UUID, len(c.Records))
	for i, r := range c.Records {
		ids[i] = r.ID
	}
	require.Equal(t, []uuid.UUID{a1.ID, a2.ID, b1.ID}, ids)
}
