package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// With Notify, a relay with a pool of its own (as in another process) and an
// hour-long poll publishes each event on the writer's NOTIFY; without it,
// the event waits for the poll.
func TestNotifyWakesRelayElsewhere(t *testing.T) {
	t.Parallel()
	for _, notify := range []bool{true, false} {
		writer := testenv.PostgresStore(t, postgres.Config{Notify: notify})
		pool, err := pgxpool.New(context.Background(), testenv.PostgresURL())
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		relayStore, err := postgres.New(pool, postgres.Config{Table: writer.Table(), Notify: notify})
		require.NoError(t, err)

		rec := faulttest.NewRecorder()
		cfg := relaytest.FastConfig()
		cfg.PollInterval = time.Hour
		cs := &claims{Store: relayStore}
		_, stop := relaytest.Start(t, cs, rec, cfg)
		ctx := context.Background()
		// The relay found nothing, polled fast for a moment and now waits
		// for its poll, or a wake-up.
		relaytest.Eventually(t, time.Minute, "the relay idle", func() bool { return cs.idleFor() > time.Second })

		check := faulttest.NewChecker()
		for i := range 3 {
			// One event and then two per call: both insert statements notify.
			evs := []outbox.Event{relaytest.Event("k", i), relaytest.Event("k2", i)}[:1+min(i, 1)]
			tx, err := writer.Pool().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, writer.AddTx(ctx, tx, evs...))
			require.NoError(t, tx.Commit(ctx))
			check.Committed(evs...)
			if notify {
				relaytest.Eventually(t, time.Minute, "notified relay", func() bool { return check.Missing(rec.Received()) == 0 })
			}
		}
		if !notify {
			time.Sleep(300 * time.Millisecond)
			require.Equal(t, 5, check.Missing(rec.Received()), "without NOTIFY the relay waits for its poll")
		}
		stop()
	}
}

// claims tells since when a relay has not claimed.
type claims struct {
	store.Store
	mu      sync.Mutex
	running int
	last    time.Time // the end of the last claim
}

func (c *claims) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	c.mu.Lock()
	c.running++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running--
		c.last = time.Now()
		c.mu.Unlock()
	}()
	return c.Store.Claim(ctx, p)
}

// Subscribe passes the store's wake-ups on.
func (c *claims) Subscribe() (<-chan struct{}, func()) { return c.Store.(store.Waker).Subscribe() }

// idleFor returns how long no claim has run, 0 while one runs or before the first.
func (c *claims) idleFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running > 0 || c.last.IsZero() {
		return 0
	}
	return time.Since(c.last)
}
