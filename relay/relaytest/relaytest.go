// Package relaytest is the relay-level conformance suite: the promises of
// the README's Guarantees checked end to end (writer → store → relay →
// broker) against a real database. Every store runs it with its
// storetest.Harness, as it runs storetest: store/postgres and store/mysql
// do. By default the relays publish to an
// in-memory recorder; [RunBroker] runs the same promises over a real broker
// and a reader of what reached it. Faults are injected by wrapping the
// publisher (faulttest.Flaky), and the shared checker of internal/faulttest
// judges what arrived.
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

// Broker is what the suite's relays publish to, for one subtest.
type Broker struct {
	// Publisher publishes to the broker. The suite wraps it to inject
	// faults.
	Publisher broker.Publisher
	// Topic is the topic of the suite's events, one of its own.
	Topic string
	// Received returns what reached the broker so far, in delivery order
	// within each key, keyed by the message's key.
	Received func() []faulttest.Received
}

// Recorder returns the default broker: an in-memory faulttest.Recorder.
func Recorder(*testing.T) Broker {
	rec := faulttest.NewRecorder()
	return Broker{Publisher: rec, Topic: "orders", Received: rec.Received}
}

// Run runs the suite on the in-memory recorder. newHarness is called once
// per subtest and must return a harness over its own empty table. Call it
// from a test that is not parallel: its Shutdown subtest checks that no
// goroutine leaked, which holds only while no other test runs beside it.
func Run(t *testing.T, newHarness func(t *testing.T) storetest.Harness) {
	RunBroker(t, newHarness, Recorder)
}

// RunBroker runs the suite with the relays publishing to the broker that
// newBroker returns, once per subtest. The Shutdown subtest checks the
// relay's own goroutines, so it always runs on the recorder.
func RunBroker(t *testing.T, newHarness func(t *testing.T) storetest.Harness, newBroker func(t *testing.T) Broker) {
	// Shutdown checks for leaked goroutines, so it runs alone, before the
	// parallel subtests start.
	t.Run("Shutdown", func(t *testing.T) { testShutdown(t, newHarness(t), Recorder(t)) })
	tests := []struct {
		name string
		fn   func(t *testing.T, h storetest.Harness, b Broker)
	}{
		{"RollbackNeverPublished", testRollbackNeverPublished},
		{"WritersNeverAborted", testWritersNeverAborted},
		{"ThreeRelaysPerKeyOrder", testThreeRelays},
		{"PerKeyOrderAcrossTopics", testAcrossTopics},
		{"PoisonEventParked", testPoisonParked},
		{"BrokerOutageBurnsNoAttempts", testOutage},
		{"PartialOutageBurnsNoAttempts", testPartialOutage},
		{"InProcessWake", testWake},
		{"Janitor", testJanitor},
		{"PublishAndDelete", testPublishAndDelete},
		{"ShutdownMarksBatchInFlight", testShutdownMarks},
		{"ShutdownDuringBreakerPause", testShutdownDuringPause},
		{"InDoubtStaysLeased", testInDoubt},
		{"ReclaimedHeldStaysLeased", testReclaimedHeld},
		{"PublishingEndsWithinLease", testPublishWithinLease},
		{"ClaimDuringShutdown", testClaimDuringShutdown},
		{"LeaseLostBeforeMark", testLeaseLostBeforeMark},
		{"SettleFails", testSettleFails},
		{"PublisherMiscounts", testPublisherMiscounts},
		{"MissingTopicParked", testMissingTopicParked},
		{"OutageStopsBatch", testOutageStopsBatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newHarness(t), newBroker(t))
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

// allReceived waits until b received every event committed in check, for
// as long as events keep arriving: it fails only when none arrived for a
// minute, so that a slow machine or broker is not mistaken for a loss.
func allReceived(t *testing.T, b Broker, check *faulttest.Checker) {
	t.Helper()
	last, since := -1, time.Now()
	for check.Missing(b.Received()) != 0 {
		if n := len(b.Received()); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > time.Minute {
			t.Fatalf("no event received for a minute, %d of %d missing", check.Missing(b.Received()), check.Len())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Start runs a relay over st until the test ends or stop is called; stop
// returns when Run has returned. Tests of stores and brokers use it too.
func Start(t *testing.T, st store.Store, pub broker.Publisher, cfg relay.Config) (r *relay.Relay, stop func()) {
	t.Helper()
	r, cancel, done := start(t, st, pub, cfg)
	return r, func() {
		cancel()
		<-done
	}
}

// start is Start for the cases that act between the beginning of the
// shutdown and its end: once cancel returns, Run's context is done; done
// is closed when Run returned.
func start(t *testing.T, st store.Store, pub broker.Publisher, cfg relay.Config) (r *relay.Relay, cancel func(), done <-chan struct{}) {
	t.Helper()
	r, err := relay.New(st, pub, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := r.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-ran
	})
	return r, cancel, ran
}

// event returns Event(key, i) on b's topic.
func (b Broker) event(key string, i int) outbox.Event {
	e := Event(key, i)
	e.Topic = b.Topic
	return e
}

// flaky wraps b's publisher to inject faults.
func (b Broker) flaky(rate float64, seed uint64) *faulttest.Flaky {
	return faulttest.NewFlaky(b.Publisher, rate, seed)
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

func claims(t *testing.T, h storetest.Harness) int64 {
	t.Helper()
	n, err := h.Claims(context.Background())
	require.NoError(t, err)
	return n
}

// Atomic: nothing from a rolled-back transaction, a rolled-back savepoint or a
// failed statement is published; a sentinel committed last proves that the
// relay got past them.
func testRollbackNeverPublished(t *testing.T, h storetest.Harness, b Broker) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	Start(t, h.Store, b.Publisher, FastConfig())

	commit(t, h, check, b.event("a", 0))

	rolledBack := b.event("b", 0)
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, rolledBack))
	require.NoError(t, tx.Rollback(ctx))
	check.RolledBack(rolledBack)

	kept, savepointed := b.event("c", 0), b.event("c", 1)
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
	failed := b.event("d", 0)
	dup := failed
	dup.Key = "d2"
	tx, err = h.Begin(ctx)
	require.NoError(t, err)
	require.Error(t, tx.Add(ctx, failed, dup))
	_ = tx.Commit(ctx)
	check.RolledBack(failed)

	commit(t, h, check, b.event("s", 0))
	Eventually(t, time.Minute, "sentinel", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), 0)
	require.True(t, report.OK(), report.String())
	require.Equal(t, 3, report.Received)
}

// The outbox never breaks a business transaction: eight writers commit and
// roll back transactions of 1 to 5 events while a relay drains a fresh, small
// table, where a relay statement that took range locks would deadlock with
// writers' inserts (as MySQL's did at REPEATABLE READ, 20-30 times in the
// first 200ms). Every transaction succeeds and every committed event is
// published in key order.
func testWritersNeverAborted(t *testing.T, h storetest.Harness, b Broker) {
	const writers, perWriter = 8, 1000 // events committed per writer
	ctx := context.Background()
	check := faulttest.NewChecker()
	r, _ := Start(t, h.Store, b.Publisher, FastConfig())
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
					events[j].Topic = b.Topic
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
	allReceived(t, b, check)
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// Per-key order: three relays, 20,000 events over 200 keys written while they run, 10%
// of publishes failing at random: nothing lost, zero per-key inversions,
// duplicates at most the counted ones.
func testThreeRelays(t *testing.T, h storetest.Harness, b Broker) {
	const keys, rounds = 200, 100
	check := faulttest.NewChecker()
	pub := b.flaky(0.10, 42)
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
			batch = append(batch, b.event(fmt.Sprint("key-", k), i))
		}
		commit(t, h, check, batch...)
	}
	allReceived(t, b, check)
	var counted, failed int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
		failed += r.Stats().Failed
	}
	report := check.Check(b.Received(), counted)
	t.Log(report)
	require.True(t, report.OK(), report.String())
	require.Equal(t, keys*rounds, report.Committed)
	require.Greater(t, failed, int64(0), "failures were injected")
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
}

// Per-key order whatever the topic: a key's events go out in write order, also when
// they go to different topics. An event that fails or is parked holds back
// the later events of its key in its batch, on every topic, and they are
// released without an attempt; other keys go on. It uses topics of its own,
// so it runs on the recorder whatever the suite's broker.
func testAcrossTopics(t *testing.T, h storetest.Harness, _ Broker) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	b := Recorder(t)
	rec := b.flaky(0.10, 7)
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
	r, _ := Start(t, h.Store, rec, cfg)

	Eventually(t, time.Minute, "p's first event parked", func() bool { return count(t, h, "parked_at IS NOT NULL") == 1 })
	Eventually(t, time.Minute, "f's first event retried", func() bool {
		retries, _, err := h.Row(ctx, f1.ID)
		require.NoError(t, err)
		return retries >= 3
	})
	for _, m := range b.Received() {
		require.NotEqual(t, f2.ID, m.ID, "f's second event went out while its first one failed")
	}
	rec.FailID(f1.ID, nil)
	Eventually(t, time.Minute, "all events", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	for _, m := range b.Received() {
		require.NotEqual(t, p2.ID, m.ID, "an event behind a parked one waits, whatever its topic")
	}
	retries, _, err := h.Row(ctx, p2.ID)
	require.NoError(t, err)
	require.Zero(t, retries, "released without an attempt")
	require.Equal(t, int64(1), count(t, h, "id = '"+p2.ID.String()+"' AND published_at IS NULL AND parked_at IS NULL"),
		"p's second event is pending")
}

// Liveness: a poison event is parked with its last_error after its attempts and
// does not block other keys; the later events of its own key wait behind it.
// A permanent error parks at once.
func testPoisonParked(t *testing.T, h storetest.Harness, b Broker) {
	ctx := context.Background()
	check := faulttest.NewChecker()
	pub := b.flaky(0, 1)
	cfg := FastConfig()
	cfg.MaxRetries = 3
	r, _ := Start(t, h.Store, pub, cfg)

	poison, behind := b.event("poisoned", 0), b.event("poisoned", 1)
	pub.FailID(poison.ID, errors.New("schema registry says no"))
	commit(t, h, nil, poison, behind)
	var others []outbox.Event
	for k := range 20 {
		others = append(others, b.event(fmt.Sprint("healthy-", k), 0))
	}
	commit(t, h, check, others...)

	Eventually(t, time.Minute, "poison parked and counted", func() bool {
		return count(t, h, "parked_at IS NOT NULL") == 1 && r.Stats().Parked == 1
	})
	Eventually(t, time.Minute, "other keys flow", func() bool { return check.Missing(b.Received()) == 0 })
	retries, lastErr, err := h.Row(ctx, poison.ID)
	require.NoError(t, err)
	require.Contains(t, lastErr, "schema registry says no")
	require.Equal(t, 3, retries)
	// A claim after the parking would have taken the event behind it, had it
	// not been held: one did, since it took an event written afterwards.
	commit(t, h, check, b.event("after-parking", 0))
	Eventually(t, time.Minute, "an event written after the parking", func() bool { return check.Missing(b.Received()) == 0 })
	for _, m := range b.Received() {
		require.NotEqual(t, behind.ID, m.ID, "an event behind a parked one waits")
	}
	require.Equal(t, int64(1), r.Stats().Parked)

	tooBig := b.event("other-poison", 0)
	pub.FailID(tooBig.ID, fmt.Errorf("%w: message too large", outbox.ErrPermanent))
	commit(t, h, nil, tooBig)
	Eventually(t, time.Minute, "permanent parked", func() bool { return count(t, h, "parked_at IS NOT NULL") == 2 })
	retries, _, err = h.Row(ctx, tooBig.ID)
	require.NoError(t, err)
	require.Equal(t, 1, retries, "parked at its first attempt")
}

// Liveness: a broker outage does not use up the attempts of the waiting events:
// each event is published into the outage more often than its attempts
// allow, and none is parked or has an attempt counted.
func testOutage(t *testing.T, h storetest.Harness, b Broker) {
	check := faulttest.NewChecker()
	flaky := b.flaky(0, 1)
	flaky.SetDown(fmt.Errorf("dial tcp 127.0.0.1:9: %w", outbox.ErrUnreachable))
	pub := &outcomes{Publisher: flaky}
	cfg := FastConfig()
	cfg.MaxRetries = 2
	r, _ := Start(t, h.Store, pub, cfg)
	var events []outbox.Event
	for k := range 10 {
		e0, e1 := b.event(fmt.Sprint("k", k), 0), b.event(fmt.Sprint("k", k), 1)
		commit(t, h, check, e0, e1)
		events = append(events, e0, e1)
	}
	Eventually(t, time.Minute, "every event published into the outage 3 times", func() bool {
		for _, e := range events {
			if pub.failures(e.ID, outbox.ErrUnreachable)+pub.failures(e.ID, outbox.ErrSkipped) < cfg.MaxRetries+1 {
				return false
			}
		}
		return true
	})
	require.Zero(t, count(t, h, "retry_count > 0"))
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	flaky.SetDown(nil)
	Eventually(t, time.Minute, "all published after the outage", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// Part of the broker is out (a partition without its leader) while the
// rest takes its messages: the events it refuses as unreachable are
// published again without using up their attempts, and the others of the
// batch are published.
func testPartialOutage(t *testing.T, h storetest.Harness, b Broker) {
	check := faulttest.NewChecker()
	flaky := b.flaky(0, 1)
	pub := &outcomes{Publisher: flaky}
	cfg := FastConfig()
	cfg.MaxRetries = 2
	r, _ := Start(t, h.Store, pub, cfg)
	out, fine := b.event("out", 0), b.event("fine", 0)
	flaky.FailID(out.ID, fmt.Errorf("partition without a leader: %w", outbox.ErrUnreachable))
	commit(t, h, check, out, fine)
	Eventually(t, time.Minute, "the event refused more often than its attempts allow", func() bool {
		return pub.failures(out.ID, outbox.ErrUnreachable) > cfg.MaxRetries
	})
	require.Zero(t, count(t, h, "retry_count > 0"))
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	flaky.FailID(out.ID, nil)
	Eventually(t, time.Minute, "both published", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// A relay in the writer's process publishes on the in-process wake-up, not
// on its poll: with an hour-long poll every event still arrives, the first
// one written after the relay's first claim found nothing.
func testWake(t *testing.T, h storetest.Harness, b Broker) {
	check := faulttest.NewChecker()
	cfg := FastConfig()
	cfg.PollInterval = time.Hour
	claimed := make(chan struct{})
	var once sync.Once
	st := &hookedStore{Store: h.Store, afterClaim: func(store.Claim) { once.Do(func() { close(claimed) }) }}
	Start(t, st, b.Publisher, cfg)
	wait(t, claimed, "the relay's first claim")
	for i := range 5 {
		commit(t, h, check, b.event("k", i))
		Eventually(t, time.Minute, "woken relay", func() bool { return check.Missing(b.Received()) == 0 })
	}
}

// The janitor deletes published rows past the retention and never touches
// pending or parked rows.
func testJanitor(t *testing.T, h storetest.Harness, b Broker) {
	pub := b.flaky(0, 1)
	cfg := FastConfig()
	cfg.Retention = 50 * time.Millisecond
	cfg.CleanupInterval = 20 * time.Millisecond
	cfg.CleanupBatch = 3
	cfg.MaxRetries = 1
	poison, blocked := b.event("p", 0), b.event("p", 1)
	pub.FailID(poison.ID, errors.New("poison"))
	Start(t, h.Store, pub, cfg)
	for i := range 10 {
		commit(t, h, nil, b.event(fmt.Sprint("k", i), 0))
	}
	commit(t, h, nil, poison, blocked)
	Eventually(t, time.Minute, "published rows deleted and the poison parked", func() bool {
		return count(t, h, "1 = 1") == 2 && count(t, h, "parked_at IS NOT NULL") == 1
	})
	require.Equal(t, int64(1), count(t, h, "published_at IS NULL AND parked_at IS NULL"))
}

// Publish-and-delete: with Retention DeleteOnPublish the relay deletes what
// the broker accepted, keeps every promise (per-key order with three relays
// and failures, a parked event holding its key back), and leaves behind only
// the parked event and what waits behind it.
func testPublishAndDelete(t *testing.T, h storetest.Harness, b Broker) {
	const keys, rounds = 50, 20
	check := faulttest.NewChecker()
	pub := b.flaky(0.10, 11)
	poison, behind := b.event("poisoned", 0), b.event("poisoned", 1)
	pub.FailID(poison.ID, fmt.Errorf("%w: too large", outbox.ErrPermanent))
	var relays []*relay.Relay
	for i := range 3 {
		cfg := FastConfig()
		cfg.Owner = fmt.Sprint("relay-", i)
		cfg.Retention = relay.DeleteOnPublish
		r, _ := Start(t, h.Store, pub, cfg)
		relays = append(relays, r)
	}
	commit(t, h, nil, poison, behind)
	for i := range rounds {
		batch := make([]outbox.Event, 0, keys)
		for k := range keys {
			batch = append(batch, b.event(fmt.Sprint("key-", k), i))
		}
		commit(t, h, check, batch...)
	}
	Eventually(t, time.Minute, "all events", func() bool { return check.Missing(b.Received()) == 0 })
	Eventually(t, 10*time.Second, "published rows deleted", func() bool { return count(t, h, "1 = 1") == 2 })
	var counted int64
	for _, r := range relays {
		counted += r.Stats().PossibleDuplicates
	}
	report := check.Check(b.Received(), counted)
	require.True(t, report.OK(), report.String())
	require.Equal(t, int64(1), count(t, h, "parked_at IS NOT NULL"))
	require.Equal(t, int64(1), count(t, h, "id = '"+behind.ID.String()+"' AND published_at IS NULL AND parked_at IS NULL"))
}

// Bounded resources: shutdown returns within its timeout while a publish hangs, marks
// nothing it did not publish, leaves no lease held, and leaks no goroutine.
func testShutdown(t *testing.T, h storetest.Harness, b Broker) {
	// The database pool belongs to the test, not to the relay: the
	// connections it opens meanwhile have goroutines of their own.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreTopFunction("github.com/go-sql-driver/mysql.(*mysqlConn).startWatcher.func1"),
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
	pub := b.flaky(0, 1)
	cfg := FastConfig()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	cfg.SettleTimeout = 5 * time.Second
	cfg.Retention = time.Hour // the janitor runs and must stop too
	unblock := pub.Block()
	defer unblock()
	_, stop := Start(t, h.Store, pub, cfg)
	for k := range 5 {
		commit(t, h, nil, b.event(fmt.Sprint("k", k), 0))
	}
	Eventually(t, time.Minute, "batch in flight", func() bool { return claims(t, h) > 0 })
	began := time.Now()
	stop()
	elapsed := time.Since(began)
	require.Less(t, elapsed, cfg.ShutdownTimeout+2*cfg.SettleTimeout, "Run returns within its documented bound")
	require.GreaterOrEqual(t, elapsed, cfg.ShutdownTimeout/2, "the batch in flight had its grace period")
	require.Zero(t, claims(t, h), "no claim left")
	require.Zero(t, count(t, h, "published_at IS NOT NULL OR retry_count > 0"))
}

// A graceful stop while the broker is slow still marks what it accepted
// within the grace period.
func testShutdownMarks(t *testing.T, h storetest.Harness, b Broker) {
	pub := b.flaky(0, 1)
	unblock := pub.Block()
	cfg := FastConfig()
	cfg.ShutdownTimeout = 30 * time.Second // room for a real broker's first publish on a loaded machine
	_, cancel, done := start(t, h.Store, pub, cfg)
	commit(t, h, nil, b.event("k", 0), b.event("k", 1))
	Eventually(t, time.Minute, "batch in flight", func() bool { return claims(t, h) > 0 })
	cancel()  // shutdown begins
	unblock() // the broker answers during the grace period
	<-done
	require.Equal(t, int64(2), count(t, h, "published_at IS NOT NULL"))
	Eventually(t, time.Minute, "both on the broker", func() bool { return len(b.Received()) == 2 })
}

// Shutdown is prompt also while the circuit breaker holds the relay back and
// writers keep waking it.
func testShutdownDuringPause(t *testing.T, h storetest.Harness, b Broker) {
	pub := b.flaky(0, 1)
	pub.SetDown(fmt.Errorf("dial: %w", outbox.ErrUnreachable))
	cfg := FastConfig()
	cfg.ErrorRetryInterval = 10 * time.Second // the breaker's first pause: 8 to 12 s
	cfg.MaxBackoff = time.Minute
	r, stop := Start(t, h.Store, pub, cfg)
	commit(t, h, nil, b.event("k", 0))
	Eventually(t, time.Minute, "breaker open", func() bool { return r.Stats().Released > 0 })
	opened := time.Now()
	commit(t, h, nil, b.event("k", 1)) // a wake-up during the pause
	time.Sleep(50 * time.Millisecond)
	stop()
	require.Less(t, time.Since(opened), 6*time.Second, "stopped without waiting out the pause")
}

// scripted hands messages on to a publisher except as a test decides: by
// message and by how often it was handed over before, it fails one, or
// stalls the call (ignoring its context) until unstall. It records the
// Reclaimed mark of each hand-over.
type scripted struct {
	inner broker.Publisher
	// answer returns what to do with m at its n-th hand-over (from 0):
	// fail it with err, stall the call, or pass it on (nil, false).
	answer  func(m *outbox.Message, n int) (err error, stall bool)
	unstall chan struct{}

	mu   sync.Mutex
	seen map[uuid.UUID][]bool
}

func newScripted(inner broker.Publisher, answer func(m *outbox.Message, n int) (error, bool)) *scripted {
	return &scripted{inner: inner, answer: answer, unstall: make(chan struct{}), seen: map[uuid.UUID][]bool{}}
}

// handovers returns the Reclaimed mark of each hand-over of id.
func (s *scripted) handovers(id uuid.UUID) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.seen[id]...)
}

func (s *scripted) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	errs := make([]error, len(msgs))
	failed := map[string]error{}
	var pass []*outbox.Message
	var at []int
	stall := false
	s.mu.Lock()
	for i, m := range msgs {
		err, st := s.answer(m, len(s.seen[m.ID]))
		s.seen[m.ID] = append(s.seen[m.ID], m.Reclaimed)
		stall = stall || st
		switch {
		case failed[m.Key] != nil:
			errs[i] = fmt.Errorf("%w: %v", outbox.ErrSkipped, failed[m.Key])
		case err != nil:
			errs[i] = err
			failed[m.Key] = err
		default:
			pass = append(pass, m)
			at = append(at, i)
		}
	}
	s.mu.Unlock()
	if stall {
		<-s.unstall
		for i := range errs {
			errs[i] = errors.New("stalled")
		}
		return errs
	}
	if len(pass) > 0 {
		for j, err := range s.inner.Publish(ctx, pass) {
			errs[at[j]] = err
		}
	}
	for _, err := range errs {
		if err != nil {
			return errs
		}
	}
	return nil
}

// leased says whether a claim still holds the event.
func leased(t *testing.T, h storetest.Harness, id uuid.UUID) bool {
	t.Helper()
	held, err := h.Held(context.Background(), id)
	require.NoError(t, err)
	return held
}

// An event whose publish is in doubt (outbox.ErrInDoubt) stays leased, with
// no attempt counted, until its lease ends, and the later events of its key
// wait behind it; the next claim hands it over again, reclaimed, and it is
// published once.
func testInDoubt(t *testing.T, h storetest.Harness, b Broker) {
	check := faulttest.NewChecker()
	x, y := b.event("k", 0), b.event("k", 1)
	pub := newScripted(b.Publisher, func(m *outbox.Message, n int) (error, bool) {
		if m.ID == x.ID && n == 0 {
			return fmt.Errorf("%w: commit unconfirmed", outbox.ErrInDoubt), false
		}
		return nil, false
	})
	cfg := FastConfig()
	cfg.Lease = time.Second
	r, _ := Start(t, h.Store, pub, cfg)
	commit(t, h, check, x, y)
	// y, skipped behind x, is released at once; x is not.
	Eventually(t, time.Minute, "y released", func() bool { return len(pub.handovers(y.ID)) == 1 && !leased(t, h, y.ID) })
	require.True(t, leased(t, h, x.ID), "x kept its lease")
	Eventually(t, time.Minute, "all published", func() bool { return check.Missing(b.Received()) == 0 })
	require.Equal(t, []bool{false, true}, pub.handovers(x.ID), "handed over again as reclaimed")
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	require.Zero(t, report.Duplicates)
	require.Zero(t, count(t, h, "retry_count > 0"), "no attempt counted")
}

// A reclaimed event that the relay does not hand to the publisher (an
// earlier event of its key failed in the batch) stays leased rather than
// released, so that it is still reclaimed when it is handed over. A relay
// stalls past its lease on key a's first event; another reclaims both of
// a's events, on two topics; the first fails, so the second is held back.
// It uses a topic of its own, so it runs on the recorder whatever the
// suite's broker.
func testReclaimedHeld(t *testing.T, h storetest.Harness, _ Broker) {
	check := faulttest.NewChecker()
	b := Recorder(t)
	a1, a2 := b.event("a", 0), b.event("a", 1)
	a2.Topic = b.Topic + "-other"
	stalling := newScripted(b.Publisher, func(*outbox.Message, int) (error, bool) { return nil, true })
	defer close(stalling.unstall)
	failing := newScripted(b.Publisher, func(m *outbox.Message, n int) (error, bool) {
		if m.ID == a1.ID && n == 0 {
			return errors.New("try again"), false
		}
		return nil, false
	})
	cfg := FastConfig()
	cfg.Lease = time.Second
	cfg.ErrorRetryInterval = 500 * time.Millisecond
	cfg.MaxBackoff = 500 * time.Millisecond
	cfg.Owner = "stalled"
	commit(t, h, check, a1, a2)
	Start(t, h.Store, stalling, cfg)
	Eventually(t, time.Minute, "the first relay stalls", func() bool { return len(stalling.handovers(a1.ID)) == 1 })
	cfg.Owner = "second"
	r, _ := Start(t, h.Store, failing, cfg)
	Eventually(t, time.Minute, "a1 failed once", func() bool {
		retries, _, err := h.Row(context.Background(), a1.ID)
		require.NoError(t, err)
		return retries == 1
	})
	require.True(t, leased(t, h, a2.ID), "a2 kept its lease")
	Eventually(t, time.Minute, "a2 handed over", func() bool { return len(failing.handovers(a2.ID)) > 0 })
	require.Equal(t, []bool{true}, failing.handovers(a2.ID), "a2 was handed over reclaimed")
	require.Empty(t, stalling.handovers(a2.ID))
	Eventually(t, time.Minute, "all published", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// deadlines records the deadline of each Publish call's context, by topic.
type deadlines struct {
	broker.Publisher
	slow time.Duration // how long a call to the first topic takes
	mu   sync.Mutex
	by   map[string]time.Time
}

func (d *deadlines) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	deadline, _ := ctx.Deadline()
	d.mu.Lock()
	if _, ok := d.by[msgs[0].Topic]; !ok {
		d.by[msgs[0].Topic] = deadline
	}
	first := len(d.by) == 1
	d.mu.Unlock()
	if first {
		time.Sleep(d.slow)
	}
	return d.Publisher.Publish(ctx, msgs)
}

// slowClaims answers claims late, as a database whose answer is held up
// after the claim committed; sent records when the first claim was sent.
type slowClaims struct {
	store.Store
	delay time.Duration
	once  sync.Once
	sent  time.Time
}

func (s *slowClaims) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	s.once.Do(func() { s.sent = time.Now() })
	c, err := s.Store.Claim(ctx, p)
	time.Sleep(s.delay)
	return c, err
}

// A batch's publishing ends three quarters of the lease after the claim was
// sent, however many topics it has and however late the claim's answer
// came: a slow first topic leaves the next one only what is left, so that
// nothing is published after another relay may have reclaimed it. It uses
// topics of its own, so it runs on the recorder.
func testPublishWithinLease(t *testing.T, h storetest.Harness, _ Broker) {
	b := Recorder(t)
	check := faulttest.NewChecker()
	pub := &deadlines{Publisher: b.Publisher, slow: 300 * time.Millisecond, by: map[string]time.Time{}}
	e1, e2 := Event("k", 0), Event("j", 0)
	e2.Topic = "payments"
	commit(t, h, check, e1, e2)
	cfg := FastConfig()
	cfg.Lease = 4 * time.Second
	st := &slowClaims{Store: h.Store, delay: time.Second}
	Start(t, st, pub, cfg)
	Eventually(t, time.Minute, "both published", func() bool { return check.Missing(b.Received()) == 0 })
	pub.mu.Lock()
	defer pub.mu.Unlock()
	require.Len(t, pub.by, 2)
	require.Equal(t, pub.by["orders"], pub.by["payments"], "one deadline for the batch")
	require.LessOrEqual(t, pub.by["orders"].Sub(st.sent), cfg.Lease*3/4, "counted from the claim's start")
}
