package relay_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// P1 through the relay: nothing from a rolled-back transaction, a rolled-back
// savepoint or a failed statement is published; a sentinel committed last
// proves the relay got past them.
func TestRollbackNeverPublished(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	start(t, st, broker.NewWatermill(rec), fastConfig())

	commit(t, st, check, event("a", 0))

	rolledBack := event("b", 0)
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, rolledBack))
	require.NoError(t, tx.Rollback(ctx))
	check.RolledBack(rolledBack)

	kept, savepointed := event("c", 0), event("c", 1)
	tx, err = st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, kept))
	_, err = tx.Exec(ctx, "SAVEPOINT sp")
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, savepointed))
	_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT sp")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	check.Committed(kept)
	check.RolledBack(savepointed)

	// A failed statement aborts a PostgreSQL transaction: its commit rolls back.
	inAborted := event("d", 0)
	tx, err = st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, inAborted))
	_, err = tx.Exec(ctx, "SELECT 1/0")
	require.Error(t, err)
	require.Error(t, tx.Commit(ctx))
	check.RolledBack(inAborted)

	sentinel := event("s", 0)
	commit(t, st, check, sentinel)
	eventually(t, 10*time.Second, "sentinel", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), 0)
	require.True(t, report.OK(), report.String())
	require.Equal(t, 3, report.Received)
}

// P4: three relays, 20,000 events over 200 keys, 10% of publishes failing at
// random: nothing lost, zero per-key inversions.
func TestThreeRelaysPerKeyOrder(t *testing.T) {
	t.Parallel()
	const keys, perKey = 200, 100
	st := testenv.PostgresStore(t, postgres.Config{})
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0.10, 42)
	pub := broker.NewWatermill(rec)
	var relays []*relay.Relay
	for i := range 3 {
		cfg := fastConfig()
		cfg.Owner = fmt.Sprint("relay-", i)
		r, _ := start(t, st, pub, cfg)
		relays = append(relays, r)
	}
	// Write while the relays run: 100 rounds, each a transaction with one
	// event for every key.
	for i := range perKey {
		batch := make([]outbox.Event, 0, keys)
		for k := range keys {
			batch = append(batch, event(fmt.Sprint("key-", k), i))
		}
		commit(t, st, check, batch...)
	}
	eventually(t, 90*time.Second, "all events", func() bool { return check.Missing(rec.Received()) == 0 })
	var counted, failed int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
		failed += r.Stats().Failed
	}
	report := check.Check(rec.Received(), counted)
	t.Log(report)
	require.True(t, report.OK(), report.String())
	require.Equal(t, keys*perKey, report.Committed)
	require.Greater(t, failed, int64(0), "failures were injected")
	require.Zero(t, scalar[int64](t, st, "SELECT count(*) FROM %s WHERE parked_at IS NOT NULL"))
}

// P5: a poison event is parked with its last_error and does not block other
// keys; the later events of its own key wait behind it, in order.
func TestPoisonEventParked(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.MaxRetries = 3
	r, _ := start(t, st, broker.NewWatermill(rec), cfg)

	poison, behind := event("poisoned", 0), event("poisoned", 1)
	rec.FailID(poison.ID, errors.New("schema registry says no"))
	commit(t, st, nil, poison, behind)
	var others []outbox.Event
	for k := range 20 {
		others = append(others, event(fmt.Sprint("healthy-", k), 0))
	}
	commit(t, st, check, others...)

	eventually(t, 10*time.Second, "poison parked", func() bool {
		return scalar[int64](t, st, "SELECT count(*) FROM %s WHERE parked_at IS NOT NULL") == 1
	})
	require.Zero(t, check.Missing(rec.Received()), "other keys flow")
	lastErr := scalar[string](t, st, "SELECT last_error FROM %s WHERE id = $1", poison.ID)
	require.Contains(t, lastErr, "schema registry says no")
	require.Equal(t, 3, scalar[int](t, st, "SELECT retry_count FROM %s WHERE id = $1", poison.ID))
	// Policy: the key's later events stay pending behind the parked one.
	time.Sleep(100 * time.Millisecond)
	for _, m := range rec.Received() {
		require.NotEqual(t, behind.ID, m.ID, "an event behind a parked one must wait")
	}
	require.Equal(t, int64(1), r.Stats().Parked)

	// A permanent error parks at once.
	tooBig := event("other-poison", 0)
	rec.FailID(tooBig.ID, fmt.Errorf("%w: message too large", outbox.ErrPermanent))
	commit(t, st, nil, tooBig)
	eventually(t, 10*time.Second, "permanent parked", func() bool {
		return scalar[int64](t, st, "SELECT count(*) FROM %s WHERE parked_at IS NOT NULL") == 2
	})
	require.Equal(t, 1, scalar[int](t, st, "SELECT retry_count FROM %s WHERE id = $1", tooBig.ID))
}

// P5: a broker outage does not use up the attempts of the waiting events.
func TestBrokerOutageBurnsNoAttempts(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	rec.SetDown(fmt.Errorf("dial tcp 127.0.0.1:9: %w", outbox.ErrUnreachable))
	cfg := fastConfig()
	cfg.MaxRetries = 2
	start(t, st, broker.NewWatermill(rec), cfg)
	for k := range 10 {
		commit(t, st, check, event(fmt.Sprint("k", k), 0), event(fmt.Sprint("k", k), 1))
	}
	time.Sleep(500 * time.Millisecond) // many claims meet the outage
	require.Zero(t, scalar[int64](t, st, "SELECT coalesce(sum(retry_count), 0) FROM %s"))
	require.Zero(t, scalar[int64](t, st, "SELECT count(*) FROM %s WHERE parked_at IS NOT NULL"))
	rec.SetDown(nil)
	eventually(t, 10*time.Second, "all published after the outage", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), 0)
	require.True(t, report.OK(), report.String())
}

// A relay in the writer's process publishes on the in-process wake-up, not
// on its poll: with an hour-long poll the event still arrives.
func TestInProcessWake(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.PollInterval = time.Hour
	start(t, st, broker.NewWatermill(rec), cfg)
	time.Sleep(50 * time.Millisecond) // the first claim found nothing; the relay sleeps
	for i := range 5 {
		commit(t, st, check, event("k", i))
		eventually(t, 5*time.Second, "woken relay", func() bool { return check.Missing(rec.Received()) == 0 })
	}
}

// The janitor deletes published rows past the retention and never touches
// pending or parked rows.
func TestJanitor(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.Retention = 50 * time.Millisecond
	cfg.CleanupInterval = 20 * time.Millisecond
	cfg.CleanupBatch = 3
	cfg.MaxRetries = 1
	poison, blocked := event("p", 0), event("p", 1)
	rec.FailID(poison.ID, errors.New("poison"))
	start(t, st, broker.NewWatermill(rec), cfg)
	for i := range 10 {
		commit(t, st, nil, event(fmt.Sprint("k", i), 0))
	}
	commit(t, st, nil, poison, blocked)
	eventually(t, 10*time.Second, "published rows deleted", func() bool {
		return scalar[int64](t, st, "SELECT count(*) FROM %s") == 2
	})
	require.Equal(t, int64(1), scalar[int64](t, st, "SELECT count(*) FROM %s WHERE parked_at IS NOT NULL"))
	require.Equal(t, int64(1), scalar[int64](t, st, "SELECT count(*) FROM %s WHERE published_at IS NULL AND parked_at IS NULL"))
}

// Shutdown returns within its timeout while a publish hangs, marks nothing it
// did not publish, leaves no lease held, and leaks no goroutine.
func TestShutdown(t *testing.T) {
	st := testenv.PostgresStore(t, postgres.Config{})
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	cfg.Retention = time.Hour // the janitor runs and must stop too
	unblock := rec.Block()
	defer unblock()
	_, stop := start(t, st, broker.NewWatermill(rec), cfg)
	for k := range 5 {
		commit(t, st, nil, event(fmt.Sprint("k", k), 0))
	}
	eventually(t, 5*time.Second, "batch in flight", func() bool {
		return scalar[int64](t, st, "SELECT count(*) FROM %s WHERE lease_token IS NOT NULL") > 0
	})
	began := time.Now()
	stop()
	elapsed := time.Since(began)
	require.Less(t, elapsed, cfg.ShutdownTimeout+2*time.Second, "Run returns within its timeout")
	require.GreaterOrEqual(t, elapsed, cfg.ShutdownTimeout/2, "the batch in flight had its grace period")
	require.Zero(t, scalar[int64](t, st, "SELECT count(*) FROM %s WHERE lease_token IS NOT NULL"), "no lease held")
	require.Zero(t, scalar[int64](t, st, "SELECT count(*) FROM %s WHERE published_at IS NOT NULL OR retry_count > 0"))
}

// A graceful stop while publishing succeeds marks what the broker accepted.
func TestShutdownMarksBatchInFlight(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	rec := faulttest.NewRecorder(0, 1)
	unblock := rec.Block()
	_, stop := start(t, st, broker.NewWatermill(rec), fastConfig())
	commit(t, st, nil, event("k", 0), event("k", 1))
	eventually(t, 5*time.Second, "batch in flight", func() bool {
		return scalar[int64](t, st, "SELECT count(*) FROM %s WHERE lease_token IS NOT NULL") > 0
	})
	var wg sync.WaitGroup
	wg.Go(stop)
	time.Sleep(50 * time.Millisecond)
	unblock() // the broker answers during the grace period
	wg.Wait()
	require.Len(t, rec.Received(), 2)
	require.Equal(t, int64(2), scalar[int64](t, st, "SELECT count(*) FROM %s WHERE published_at IS NOT NULL"))
}

// Killing the relay's database connections: it recovers and loses nothing.
func TestTerminatedConnections(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	// The relay has a pool of its own, as in a separate deployment, tagged
	// so that the test can find its connections.
	pcfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
	require.NoError(t, err)
	app := testenv.Table("relay")
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	relayPool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(relayPool.Close)
	relayStore, err := postgres.New(relayPool, postgres.Config{Table: st.Table()})
	require.NoError(t, err)

	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := fastConfig()
	cfg.Lease = 3 * time.Second // bounds the wait for a claim whose answer was lost
	r, err := relay.New(relayStore, broker.NewWatermill(rec), cfg)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	killed := 0
	for round := range 20 {
		var batch []outbox.Event
		for k := range 50 {
			batch = append(batch, event(fmt.Sprint("k", k), round))
		}
		commit(t, st, check, batch...)
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1`, app).Scan(&n))
		killed += n
		time.Sleep(20 * time.Millisecond)
	}
	require.Greater(t, killed, 0)
	eventually(t, 30*time.Second, "all published", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), r.Stats().PossibleDuplicates)
	t.Log(report, "; connections killed:", killed)
	require.True(t, report.OK(), report.String())
}

func TestConfigValidation(t *testing.T) {
	st := testenv.PostgresStore(t, postgres.Config{})
	_, err := relay.New(st, broker.NewWatermill(faulttest.NewRecorder(0, 1)), relay.Config{BatchSize: -1, Lease: time.Millisecond})
	require.ErrorContains(t, err, "Config.BatchSize")
	require.ErrorContains(t, err, "Config.Lease")
	_, err = relay.New(nil, nil, relay.Config{})
	require.Error(t, err)
}

// Shutdown is prompt also while the circuit breaker holds the relay back and
// writers keep waking it.
func TestShutdownDuringBreakerPause(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	rec := faulttest.NewRecorder(0, 1)
	rec.SetDown(fmt.Errorf("dial: %w", outbox.ErrUnreachable))
	cfg := fastConfig()
	cfg.ErrorRetryInterval = 5 * time.Second // the breaker's first pause
	cfg.MaxBackoff = time.Minute
	r, stop := start(t, st, broker.NewWatermill(rec), cfg)
	commit(t, st, nil, event("k", 0))
	eventually(t, 5*time.Second, "breaker open", func() bool { return r.Stats().Released > 0 })
	commit(t, st, nil, event("k", 1)) // a wake-up during the pause
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	stop()
	require.Less(t, time.Since(began), time.Second)
}
