package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// Queue: events sent in the caller's batch are written if and only if the
// transaction commits; an invalid event is rejected before anything is
// queued.
func TestQueue(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	send := func(commit bool, events ...outbox.Event) {
		t.Helper()
		tx, err := st.Pool().Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		b := &pgx.Batch{}
		b.Queue("SELECT 1") // the business statements
		require.NoError(t, st.Queue(ctx, b, events...))
		require.NoError(t, tx.SendBatch(ctx, b).Close())
		if commit {
			require.NoError(t, tx.Commit(ctx))
		}
	}
	one, a, b := relaytest.Event("k", 0), relaytest.Event("k", 1), relaytest.Event("j", 0)
	send(true, one)
	send(false, relaytest.Event("rolled-back", 0))
	send(true, a, b)

	bad := relaytest.Event("k", 2)
	bad.Topic = ""
	batch := &pgx.Batch{}
	require.ErrorIs(t, st.Queue(ctx, batch, relaytest.Event("k", 3), bad), outbox.ErrEmptyTopic)
	require.Zero(t, batch.Len(), "nothing queued")

	c, err := st.Claim(ctx, store.ClaimParams{Owner: "t", Limit: 10, Lease: 30 * time.Second})
	require.NoError(t, err)
	var got []string
	for _, r := range c.Records {
		got = append(got, r.ID.String())
	}
	require.Equal(t, []string{one.ID.String(), a.ID.String(), b.ID.String()}, got)
}
