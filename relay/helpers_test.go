package relay_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// fastConfig keeps the relay's timings short for tests.
func fastConfig() relay.Config {
	return relay.Config{
		BatchSize:          100,
		PollInterval:       10 * time.Millisecond,
		ErrorRetryInterval: 5 * time.Millisecond,
		MaxBackoff:         50 * time.Millisecond,
		MaxRetries:         1000,
		ShutdownTimeout:    2 * time.Second,
	}
}

// start runs a relay until the test ends or stop is called; stop returns
// when Run has returned.
func start(t *testing.T, st *postgres.Store, pub broker.Publisher, cfg relay.Config) (r *relay.Relay, stop func()) {
	t.Helper()
	r, err := relay.New(st, pub, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(stop)
	return r, stop
}

// event returns a valid event for key with a small envelope payload.
func event(key string, i int) outbox.Event {
	id := outbox.NewID()
	return outbox.Event{
		ID: id, Topic: "orders", AggregateType: "order", AggregateID: key, EventType: "order.updated.v1",
		Payload: fmt.Appendf(nil, `{"event_id":%q,"data":{"key":%q,"n":%d}}`, id, key, i),
	}
}

// commit writes events in one committed transaction and records them.
func commit(t testing.TB, st *postgres.Store, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, events...))
	require.NoError(t, tx.Commit(ctx))
	if c != nil {
		c.Committed(events...)
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scalar[T any](t *testing.T, st *postgres.Store, query string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, st.Pool().QueryRow(context.Background(), fmt.Sprintf(query, st.Table()), args...).Scan(&v))
	return v
}
