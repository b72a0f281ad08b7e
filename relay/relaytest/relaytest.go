// Package relaytest is the relay-level conformance suite: the promises of
// DESIGN §1 checked end to end (writer → store → relay → publisher) against a
// real database. Every store runs it with its storetest.Harness, as it runs
// storetest: store/postgres and store/mysql do. Publishing goes through the
// Watermill adapter to a recording publisher that fails on demand, and the
// shared checker of internal/faulttest judges what arrived.
package relaytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/storetest"
)

// Run runs the suite. newHarness is called once per subtest and must return
// a harness over its own empty table. Call it from a test that is not
// parallel: its Shutdown subtest checks that no goroutine leaked, which holds
// only while no other test runs beside it.
func Run(t *testing.T, newHarness func(t *testing.T) storetest.Harness) {
	// Shutdown checks for leaked goroutines, so it runs alone, before the
	// parallel subtests start.
	t.Run("Shutdown", func(t *testing.T) { testShutdown(t, newHarness(t)) })
	tests := []struct {
		name string
		fn   func(t *testing.T, h storetest.Harness)
	}{
		{"RollbackNeverPublished", testRollbackNeverPublished},
		{"WritersNeverAborted", testWritersNeverAborted},
		{"ThreeRelaysPerKeyOrder", testThreeRelays},
		{"PerKeyOrderAcrossTopics", testAcrossTopics},
		{"PoisonEventParked", testPoisonParked},
		{"BrokerOutageBurnsNoAttempts", testOutage},
		{"InProcessWake", testWake},
		{"Janitor", testJanitor},
		{"ShutdownMarksBatchInFlight", testShutdownMarks},
		{"ShutdownDuringBreakerPause", testShutdownDuringPause},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t))
		})
	}
}

// FastConfig keeps the relay's timings short for tests.
func FastConfig() relay.Config {
	return relay.Config{
		BatchSize:          100,
		PollInterval:       10 * time.Millisecond,
		ErrorRetryInterval: 5 * time.Millisecond,
		MaxBackoff:         50 * time.Millisecond,
		MaxRetries:         1000,
		ShutdownTimeout:    2 * time.Second,
	}
}

// Event returns a valid event of key with a small envelope payload.
func Event(key string, i int) outbox.Event { return eventWithID(outbox.NewID(), key, i) }

func eventWithID(id uuid.UUID, key string, i int) outbox.Event {
	return outbox.Event{
		ID: id, Topic: "orders", AggregateType: "order", AggregateID: key, EventType: "order.updated.v1",
		Payload: fmt.Appendf(nil, `{"event_id":%q,"data":{"key":%q,"n":%d}}`, id, key, i),
	}
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start runs a relay over st until the test ends or stop is called; stop
// returns when Run has returned. Tests of stores and brokers use it too.
func Start(t *testing.T, st store.Store, pub broker.Publisher, cfg relay.Config) (r *relay.Relay, stop func()) {
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

// commit writes events in one committed transaction and records them.
func commit(t *testing.T, h storetest.Harness, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, events...))
	require.NoError(t, tx.Commit(ctx))
	if c != nil {
		c.Committed(events...)
	}
}

func count(t *testing.T, h storetest.Harness, where string) int64 {
	t.Helper()
	n, err := h.Count(context.Background(), where)
	require.NoError(t, err)
	return n
}

// P1: nothing from a rolled-back transaction, a rolled-back savepoint or a
// failed statement is published; a sentinel committed last proves that the
// relay got past them.
func testRollbackNeverPublished(t *testing.T, h storetest.Harness) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	Start(t, h.Store, broker.NewWatermill(rec), FastConfig())

	commit(t, h, check, Event("a", 0))

	rolledBack := Event("b", 0)
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, rolledBack))
	require.NoError(t, tx.Rollback(ctx))
	check.RolledBack(rolledBack)

	kept, savepointed := Event("c", 0), Event("c", 1)
	tx, err = h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, kept))
	require.NoError(t, tx.Savepoint(ctx, "sp"))
	require.NoError(t, tx.Add(ctx, savepointed))
	require.NoError(t, tx.RollbackTo(ctx, "sp"))
	require.NoError(t, tx.Commit(ctx))
	check.Committed(kept)
	check.RolledBack(savepointed)

	// A failed statement (the second event reuses the first one's ID)
	// writes none of its events, whether the transaction then commits what
	// it wrote before or aborts as PostgreSQL does.
	failed := Event("d", 0)
	dup := failed
	dup.Key = "d2"
	tx, err = h.Begin(ctx)
	require.NoError(t, err)
	require.Error(t, tx.Add(ctx, failed, dup))
	_ = tx.Commit(ctx)
	check.RolledBack(failed)

	commit(t, h, check, Event("s", 0))
	Eventually(t, 10*time.Second, "sentinel", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), 0)
	require.True(t, report.OK(), report.String())
	require.Equal(t, 3, report.Received)
}

// The outbox never breaks a business transaction: eight writers commit and
// roll back transactions of 1 to 5 events while a relay drains a fresh, small
// table, where a relay statement that took range locks would deadlock with
// writers' inserts (as MySQL's did at REPEATABLE READ, 20-30 times in the
// first 200ms). Every transaction succeeds and every committed event is
// published in key order.
func testWritersNeverAborted(t *testing.T, h storetest.Harness) {
	const writers, perWriter = 8, 1000 // events committed per writer
	ctx := context.Background()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	r, _ := Start(t, h.Store, broker.NewWatermill(rec), FastConfig())
	var mu sync.Mutex
	var failures []error
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			// Each writer has keys of its own, so that its commit order is
			// its keys' write order.
			for i, written := 0, 0; written < perWriter; i++ {
				n := min(1+i%5, perWriter-written)
				events := make([]outbox.Event, n)
				for j := range events {
					// Random IDs, as Watermill's message UUIDs are, land
					// anywhere in the primary key, not only at its end.
					events[j] = eventWithID(uuid.New(), fmt.Sprintf("w%d-k%d", w, (i+j)%7), i)
				}
				rollback := i%6 == 5
				err := func() error {
					tx, err := h.Begin(ctx)
					if err != nil {
						return err
					}
					// One statement per event, as business code that
					// writes an event per change does.
					for _, e := range events {
						if err := tx.Add(ctx, e); err != nil {
							_ = tx.Rollback(ctx)
							return err
						}
					}
					if rollback {
						return tx.Rollback(ctx)
					}
					return tx.Commit(ctx)
				}()
				switch {
				case err != nil:
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					check.RolledBack(events...)
				case rollback:
					check.RolledBack(events...)
				default:
					check.Committed(events...)
					written += n
				}
			}
		})
	}
	wg.Wait()
	for _, err := range failures[:min(len(failures), 5)] {
		t.Errorf("writer transaction failed: %v", err)
	}
	require.Zero(t, len(failures), "writer transactions failed")
	Eventually(t, 2*time.Minute, "all events", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// P4: three relays, 20,000 events over 200 keys written while they run, 10%
// of publishes failing at random: nothing lost, zero per-key inversions.
func testThreeRelays(t *testing.T, h storetest.Harness) {
	const keys, rounds = 200, 100
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0.10, 42)
	pub := broker.NewWatermill(rec)
	var relays []*relay.Relay
	for i := range 3 {
		cfg := FastConfig()
		cfg.Owner = fmt.Sprint("relay-", i)
		r, _ := Start(t, h.Store, pub, cfg)
		relays = append(relays, r)
	}
	for i := range rounds {
		batch := make([]outbox.Event, 0, keys)
		for k := range keys {
			batch = append(batch, Event(fmt.Sprint("key-", k), i))
		}
		commit(t, h, check, batch...)
	}
	Eventually(t, 2*time.Minute, "all events", func() bool { return check.Missing(rec.Received()) == 0 })
	var counted, failed int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
		failed += r.Stats().Failed
	}
	report := check.Check(rec.Received(), counted)
	t.Log(report)
	require.True(t, report.OK(), report.String())
	require.Equal(t, keys*rounds, report.Committed)
	require.Greater(t, failed, int64(0), "failures were injected")
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
}

// P4 whatever the topic: a key's events go out in write order, also when
// they go to different topics. An event that fails or is parked holds back
// the later events of its key in its batch, on every topic, and they are
// released without an attempt; other keys go on.
func testAcrossTopics(t *testing.T, h storetest.Harness) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0.10, 7)
	// One batch: key p's first event is an older writer's row with a topic
	// Kafka refuses, parked at once; key f's first event fails until it is
	// let through; the next event of each goes to another topic. Keys k*
	// cycle through three topics while 10% of publishes fail.
	require.NoError(t, h.InsertLegacy(ctx, "order", "p", "order.updated.v1", "p", `{"topic":"bad topic!"}`))
	p2, f1, f2 := Event("p", 1), Event("f", 0), Event("f", 1)
	p2.Topic, f2.Topic = "payments", "payments"
	rec.FailID(f1.ID, errors.New("leader not available"))
	commit(t, h, nil, p2)
	commit(t, h, check, f1, f2)
	topics := []string{"orders", "payments", "shipments"}
	for i := range 6 {
		var batch []outbox.Event
		for k := range 10 {
			e := Event(fmt.Sprint("k", k), i)
			e.Topic = topics[(i+k)%len(topics)]
			batch = append(batch, e)
		}
		commit(t, h, check, batch...)
	}
	cfg := FastConfig()
	cfg.MaxRetries = 10000
	r, _ := Start(t, h.Store, broker.NewWatermill(rec), cfg)

	Eventually(t, 10*time.Second, "p's first event parked", func() bool { return count(t, h, "parked_at IS NOT NULL") == 1 })
	Eventually(t, 10*time.Second, "f's first event retried", func() bool {
		retries, _, err := h.Row(ctx, f1.ID)
		require.NoError(t, err)
		return retries >= 3
	})
	for _, m := range rec.Received() {
		require.NotEqual(t, f2.ID, m.ID, "f's second event went out while its first one failed")
	}
	rec.FailID(f1.ID, nil)
	Eventually(t, time.Minute, "all events", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	for _, m := range rec.Received() {
		require.NotEqual(t, p2.ID, m.ID, "an event behind a parked one waits, whatever its topic")
	}
	retries, _, err := h.Row(ctx, p2.ID)
	require.NoError(t, err)
	require.Zero(t, retries, "released without an attempt")
	require.Equal(t, int64(1), count(t, h, "id = '"+p2.ID.String()+"' AND published_at IS NULL AND parked_at IS NULL"),
		"p's second event is pending")
}

// P5: a poison event is parked with its last_error after its attempts and
// does not block other keys; the later events of its own key wait behind it.
// A permanent error parks at once.
func testPoisonParked(t *testing.T, h storetest.Harness) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := FastConfig()
	cfg.MaxRetries = 3
	r, _ := Start(t, h.Store, broker.NewWatermill(rec), cfg)

	poison, behind := Event("poisoned", 0), Event("poisoned", 1)
	rec.FailID(poison.ID, errors.New("schema registry says no"))
	commit(t, h, nil, poison, behind)
	var others []outbox.Event
	for k := range 20 {
		others = append(others, Event(fmt.Sprint("healthy-", k), 0))
	}
	commit(t, h, check, others...)

	Eventually(t, 10*time.Second, "poison parked", func() bool { return count(t, h, "parked_at IS NOT NULL") == 1 })
	require.Zero(t, check.Missing(rec.Received()), "other keys flow")
	retries, lastErr, err := h.Row(ctx, poison.ID)
	require.NoError(t, err)
	require.Contains(t, lastErr, "schema registry says no")
	require.Equal(t, 3, retries)
	time.Sleep(100 * time.Millisecond)
	for _, m := range rec.Received() {
		require.NotEqual(t, behind.ID, m.ID, "an event behind a parked one waits")
	}
	require.Equal(t, int64(1), r.Stats().Parked)

	tooBig := Event("other-poison", 0)
	rec.FailID(tooBig.ID, fmt.Errorf("%w: message too large", outbox.ErrPermanent))
	commit(t, h, nil, tooBig)
	Eventually(t, 10*time.Second, "permanent parked", func() bool { return count(t, h, "parked_at IS NOT NULL") == 2 })
	retries, _, err = h.Row(ctx, tooBig.ID)
	require.NoError(t, err)
	require.Equal(t, 1, retries, "parked at its first attempt")
}

// P5: a broker outage does not use up the attempts of the waiting events.
func testOutage(t *testing.T, h storetest.Harness) {
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	rec.SetDown(fmt.Errorf("dial tcp 127.0.0.1:9: %w", outbox.ErrUnreachable))
	cfg := FastConfig()
	cfg.MaxRetries = 2
	Start(t, h.Store, broker.NewWatermill(rec), cfg)
	for k := range 10 {
		commit(t, h, check, Event(fmt.Sprint("k", k), 0), Event(fmt.Sprint("k", k), 1))
	}
	time.Sleep(500 * time.Millisecond) // many claims meet the outage
	require.Zero(t, count(t, h, "retry_count > 0"))
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	rec.SetDown(nil)
	Eventually(t, 10*time.Second, "all published after the outage", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), 0)
	require.True(t, report.OK(), report.String())
}

// A relay in the writer's process publishes on the in-process wake-up, not
// on its poll: with an hour-long poll every event still arrives.
func testWake(t *testing.T, h storetest.Harness) {
	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder(0, 1)
	cfg := FastConfig()
	cfg.PollInterval = time.Hour
	Start(t, h.Store, broker.NewWatermill(rec), cfg)
	time.Sleep(50 * time.Millisecond) // the first claim found nothing; the relay sleeps
	for i := range 5 {
		commit(t, h, check, Event("k", i))
		Eventually(t, 5*time.Second, "woken relay", func() bool { return check.Missing(rec.Received()) == 0 })
	}
}

// The janitor deletes published rows past the retention and never touches
// pending or parked rows.
func testJanitor(t *testing.T, h storetest.Harness) {
	rec := faulttest.NewRecorder(0, 1)
	cfg := FastConfig()
	cfg.Retention = 50 * time.Millisecond
	cfg.CleanupInterval = 20 * time.Millisecond
	cfg.CleanupBatch = 3
	cfg.MaxRetries = 1
	poison, blocked := Event("p", 0), Event("p", 1)
	rec.FailID(poison.ID, errors.New("poison"))
	Start(t, h.Store, broker.NewWatermill(rec), cfg)
	for i := range 10 {
		commit(t, h, nil, Event(fmt.Sprint("k", i), 0))
	}
	commit(t, h, nil, poison, blocked)
	Eventually(t, 10*time.Second, "published rows deleted", func() bool { return count(t, h, "1 = 1") == 2 })
	require.Equal(t, int64(1), count(t, h, "parked_at IS NOT NULL"))
	require.Equal(t, int64(1), count(t, h, "published_at IS NULL AND parked_at IS NULL"))
}

// P7: shutdown returns within its timeout while a publish hangs, marks
// nothing it did not publish, leaves no lease held, and leaks no goroutine.
func testShutdown(t *testing.T, h storetest.Harness) {
	// The database pool belongs to the test, not to the relay: the
	// connections it opens meanwhile have goroutines of their own.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"),
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	rec := faulttest.NewRecorder(0, 1)
	cfg := FastConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	cfg.Retention = time.Hour // the janitor runs and must stop too
	unblock := rec.Block()
	defer unblock()
	_, stop := Start(t, h.Store, broker.NewWatermill(rec), cfg)
	for k := range 5 {
		commit(t, h, nil, Event(fmt.Sprint("k", k), 0))
	}
	Eventually(t, 5*time.Second, "batch in flight", func() bool { return count(t, h, "lease_token IS NOT NULL") > 0 })
	began := time.Now()
	stop()
	elapsed := time.Since(began)
	require.Less(t, elapsed, cfg.ShutdownTimeout+2*time.Second, "Run returns within its timeout")
	require.GreaterOrEqual(t, elapsed, cfg.ShutdownTimeout/2, "the batch in flight had its grace period")
	require.Zero(t, count(t, h, "lease_token IS NOT NULL"), "no lease held")
	require.Zero(t, count(t, h, "published_at IS NOT NULL OR retry_count > 0"))
}

// A graceful stop while the broker is slow still marks what it accepted
// within the grace period.
func testShutdownMarks(t *testing.T, h storetest.Harness) {
	rec := faulttest.NewRecorder(0, 1)
	unblock := rec.Block()
	_, stop := Start(t, h.Store, broker.NewWatermill(rec), FastConfig())
	commit(t, h, nil, Event("k", 0), Event("k", 1))
	Eventually(t, 5*time.Second, "batch in flight", func() bool { return count(t, h, "lease_token IS NOT NULL") > 0 })
	var wg sync.WaitGroup
	wg.Go(stop)
	time.Sleep(50 * time.Millisecond)
	unblock() // the broker answers during the grace period
	wg.Wait()
	require.Len(t, rec.Received(), 2)
	require.Equal(t, int64(2), count(t, h, "published_at IS NOT NULL"))
}

// Shutdown is prompt also while the circuit breaker holds the relay back and
// writers keep waking it.
func testShutdownDuringPause(t *testing.T, h storetest.Harness) {
	rec := faulttest.NewRecorder(0, 1)
	rec.SetDown(fmt.Errorf("dial: %w", outbox.ErrUnreachable))
	cfg := FastConfig()
	cfg.ErrorRetryInterval = 5 * time.Second // the breaker's first pause
	cfg.MaxBackoff = time.Minute
	r, stop := Start(t, h.Store, broker.NewWatermill(rec), cfg)
	commit(t, h, nil, Event("k", 0))
	Eventually(t, 5*time.Second, "breaker open", func() bool { return r.Stats().Released > 0 })
	commit(t, h, nil, Event("k", 1)) // a wake-up during the pause
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	stop()
	require.Less(t, time.Since(began), time.Second)
}
