package outboxwatermill_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// slowBroker takes a while per batch, so that a batch is in flight when the
// router closes.
type slowBroker struct {
	broker.Publisher
	delay time.Duration
}

func (s slowBroker) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	time.Sleep(s.delay)
	return s.Publisher.Publish(ctx, msgs)
}

// runRouter runs a router with the relay plugin and returns a function that
// closes it and waits for Run to return.
func runRouter(t *testing.T, r *relay.Relay) (closeRouter func() error) {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 20 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddPlugin(outboxwatermill.RelayPlugin(r))
	ran := make(chan error, 1)
	go func() { ran <- router.Run(context.Background()) }()
	<-router.Running()
	return func() error {
		err := router.Close()
		require.NoError(t, <-ran)
		return err
	}
}

// The relay starts with the router and stops with it: when Close returns,
// the batch in flight has been published and marked and no lease is held, so
// the next relay (in a new router) drains the rest at once instead of
// waiting for leases to expire.
func TestRelayStopsWithRouter(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	db := stdlib.OpenDBFromPool(st.Pool())
	defer db.Close()
	ctx := context.Background()
	const n = 300
	events := make([]outbox.Event, n)
	for i := range events {
		events[i] = outbox.Event{Topic: "orders", EventType: "order.placed.v1", AggregateID: "order-1", Payload: []byte(`{}`)}
	}
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, events...))
	require.NoError(t, tx.Commit(ctx))

	rec := faulttest.NewRecorder()
	cfg := testRelayConfig()
	cfg.BatchSize = 10
	cfg.Lease = time.Minute
	r, err := relay.New(st, slowBroker{rec, 50 * time.Millisecond}, cfg)
	require.NoError(t, err)
	closeRouter := runRouter(t, r)
	eventually(t, 10*time.Second, func() bool { return len(rec.Messages()) >= 20 }, "relay in the router published nothing")

	require.NoError(t, closeRouter())
	claimed := "SELECT count(*) FROM " + migrations.ClaimsTable(st.Table())
	published := "SELECT count(*) FROM " + st.Table() + " WHERE published_at IS NOT NULL"
	require.Zero(t, count(t, db, claimed), "claims left after the router closed")
	marked := count(t, db, published)
	require.Equal(t, len(rec.Messages()), marked, "every message the broker accepted is marked")
	require.Less(t, marked, n, "the relay stopped before draining the table")
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, marked, len(rec.Messages()), "the relay published after the router closed")

	r2, err := relay.New(st, rec, testRelayConfig())
	require.NoError(t, err)
	closeRouter = runRouter(t, r2)
	eventually(t, 10*time.Second, func() bool { return count(t, db, published) == n }, "second relay did not drain the table")
	require.NoError(t, closeRouter())
	require.Zero(t, count(t, db, claimed))
}
