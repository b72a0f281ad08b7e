package relaytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/storetest"
)

// The cases in this file hold the relay at one step of its cycle, or make a
// step fail, and observe what it does then. The broker plays no part in
// them, so they run on the recorder whatever the suite's broker.

// hookedStore runs hooks around a store's calls. A nil hook does nothing; a
// hook's error is returned instead of calling the store.
type hookedStore struct {
	store.Store
	beforeClaim func()
	afterClaim  func(store.Claim)
	mark        func() error // before MarkPublished
	settle      func() error // before Fail and Release
}

func (s *hookedStore) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	if s.beforeClaim != nil {
		s.beforeClaim()
	}
	c, err := s.Store.Claim(ctx, p)
	if err == nil && s.afterClaim != nil {
		s.afterClaim(c)
	}
	return c, err
}

func (s *hookedStore) MarkPublished(ctx context.Context, token uuid.UUID, ids []uuid.UUID) (int, error) {
	if s.mark != nil {
		if err := s.mark(); err != nil {
			return 0, err
		}
	}
	return s.Store.MarkPublished(ctx, token, ids)
}

func (s *hookedStore) Fail(ctx context.Context, token uuid.UUID, failures []store.Failure) error {
	if s.settle != nil {
		if err := s.settle(); err != nil {
			return err
		}
	}
	return s.Store.Fail(ctx, token, failures)
}

func (s *hookedStore) Release(ctx context.Context, token uuid.UUID, ids []uuid.UUID, delay time.Duration) error {
	if s.settle != nil {
		if err := s.settle(); err != nil {
			return err
		}
	}
	return s.Store.Release(ctx, token, ids, delay)
}

// Subscribe passes the store's wake-ups on, if it has any.
func (s *hookedStore) Subscribe() (<-chan struct{}, func()) {
	if w, ok := s.Store.(store.Waker); ok {
		return w.Subscribe()
	}
	return nil, func() {}
}

// outcomes wraps a publisher and keeps, per event, how often it was given
// to the publisher and the errors it got back.
type outcomes struct {
	broker.Publisher
	mu   sync.Mutex
	sent map[uuid.UUID]int
	errs map[uuid.UUID][]error
}

func (o *outcomes) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	errs := o.Publisher.Publish(ctx, msgs)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent == nil {
		o.sent, o.errs = map[uuid.UUID]int{}, map[uuid.UUID][]error{}
	}
	for i, m := range msgs {
		o.sent[m.ID]++
		if i < len(errs) && errs[i] != nil {
			o.errs[m.ID] = append(o.errs[m.ID], errs[i])
		}
	}
	return errs
}

// published returns how often event id was given to the publisher.
func (o *outcomes) published(id uuid.UUID) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent[id]
}

// failures returns how many publishes of event id failed with target.
func (o *outcomes) failures(id uuid.UUID, target error) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, err := range o.errs[id] {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// wait waits until ch is closed, or fails the test after a minute.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out after a minute waiting for %s", what)
	}
}

// times returns how often event id was received.
func times(b Broker, id uuid.UUID) int {
	n := 0
	for _, m := range b.Received() {
		if m.ID == id {
			n++
		}
	}
	return n
}

// Bounded resources: a claim that commits after shutdown began is a batch in flight: the
// relay publishes and marks it, and no lease outlives Run. The relay's first
// claim is held until its context is done.
func testClaimDuringShutdown(t *testing.T, h storetest.Harness, _ Broker) {
	b := Recorder(t)
	commit(t, h, nil, b.event("k", 0), b.event("k", 1))
	entered, shutdown := make(chan struct{}), make(chan struct{})
	var once sync.Once
	st := &hookedStore{Store: h.Store, beforeClaim: func() {
		once.Do(func() {
			close(entered)
			<-shutdown
		})
	}}
	_, cancel, done := start(t, st, b.Publisher, FastConfig())
	wait(t, entered, "the relay's first claim")
	cancel() // Run's context is done: shutdown has begun
	close(shutdown)
	wait(t, done, "Run to return")
	require.Zero(t, claims(t, h), "no claim outlives Run")
	require.Equal(t, int64(2), count(t, h, "published_at IS NOT NULL"), "the batch claimed during shutdown was finished")
	require.Len(t, b.Received(), 2)
}

// Duplicates counted: a lease lost before the mark (the relay stalled after publishing, past
// its lease, and another relay took the events over): the mark finds none of
// them, and the relay counts them as possible duplicates.
func testLeaseLostBeforeMark(t *testing.T, h storetest.Harness, _ Broker) {
	ctx := context.Background()
	b := Recorder(t)
	check := faulttest.NewChecker()
	commit(t, h, check, b.event("a", 0), b.event("b", 0))
	marking, takenOver := make(chan struct{}), make(chan struct{})
	var once sync.Once
	st := &hookedStore{Store: h.Store, mark: func() error {
		once.Do(func() {
			close(marking)
			<-takenOver
		})
		return nil
	}}
	cfg := FastConfig()
	cfg.Lease = time.Second
	r, _ := Start(t, st, b.Publisher, cfg)
	wait(t, marking, "the relay's mark")

	taken := map[uuid.UUID]uuid.UUID{} // event ID → the other relay's token
	Eventually(t, time.Minute, "the other relay's claim, once the lease expired", func() bool {
		c, err := h.Store.Claim(ctx, store.ClaimParams{Owner: "other", Limit: 10, Lease: time.Minute})
		require.NoError(t, err)
		for _, rec := range c.Records {
			require.True(t, rec.Reclaimed, "claimed before and never settled")
			taken[rec.ID] = c.Token
		}
		return len(taken) == 2
	})
	close(takenOver)
	// The relay counts the published events after the lost ones.
	Eventually(t, time.Minute, "the lost lease and the published events counted", func() bool {
		st := r.Stats()
		return st.PossibleDuplicates == 2 && st.Published == 2
	})
	require.Zero(t, count(t, h, "published_at IS NOT NULL"), "the relay's mark found none of its events")
	for id, token := range taken {
		n, err := h.Store.MarkPublished(ctx, token, []uuid.UUID{id})
		require.NoError(t, err)
		require.Equal(t, 1, n, "the other relay's lease holds")
	}
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
}

// Nothing lost and Duplicates counted: the steps that record an outcome fail until SettleTimeout: the mark
// of a published event, the failed attempt of another and the release of
// the event held behind it. Their events stay leased, are claimed again once
// the lease expired, counted as possible duplicates, and all reach the
// broker once the store answers.
func testSettleFails(t *testing.T, h storetest.Harness, _ Broker) {
	b := Recorder(t)
	flaky := b.flaky(0, 1)
	check := faulttest.NewChecker()
	failed, held, published := b.event("a", 0), b.event("a", 1), b.event("b", 0)
	flaky.FailID(failed.ID, errors.New("leader not available"))
	commit(t, h, check, failed, held, published)
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	refuse := func() error {
		if down.Load() {
			refused.Add(1)
			return errors.New("connection reset by peer")
		}
		return nil
	}
	st := &hookedStore{Store: h.Store, mark: refuse, settle: refuse}
	cfg := FastConfig()
	cfg.Lease = time.Second
	cfg.SettleTimeout = 500 * time.Millisecond
	r, _ := Start(t, st, flaky, cfg)

	Eventually(t, time.Minute, "the published event claimed again after its lease", func() bool { return times(b, published.ID) >= 2 })
	require.Greater(t, refused.Load(), int64(3), "the mark, the failure and the release were refused")
	down.Store(false)
	flaky.FailID(failed.ID, nil)
	Eventually(t, time.Minute, "all marked", func() bool { return count(t, h, "published_at IS NOT NULL") == 3 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	require.Positive(t, report.Duplicates)
}

// miscounting publishes through its publisher and then breaks the
// publisher contract: it returns one outcome more than it got messages.
type miscounting struct {
	broker.Publisher
	calls atomic.Int64
}

func (m *miscounting) Publish(ctx context.Context, msgs []*outbox.Message) []error {
	errs := m.Publisher.Publish(ctx, msgs)
	if m.calls.Add(1) == 1 {
		return make([]error, len(msgs)+1)
	}
	return errs
}

// Duplicates counted: a publisher that returns a wrong number of outcomes leaves every
// message of the call uncertain: the relay counts each as a possible
// duplicate, records a failed attempt, and publishes them again.
func testPublisherMiscounts(t *testing.T, h storetest.Harness, _ Broker) {
	ctx := context.Background()
	b := Recorder(t)
	check := faulttest.NewChecker()
	events := []outbox.Event{b.event("a", 0), b.event("b", 0), b.event("c", 0)}
	commit(t, h, check, events...)
	r, _ := Start(t, h.Store, &miscounting{Publisher: b.Publisher}, FastConfig())
	Eventually(t, time.Minute, "all marked", func() bool { return count(t, h, "published_at IS NOT NULL") == 3 })
	var first []uuid.UUID // the events of the call that miscounted, received twice
	for _, e := range events {
		switch times(b, e.ID) {
		case 2:
			first = append(first, e.ID)
		case 1:
		default:
			t.Fatalf("event %s received %d times", e.ID, times(b, e.ID))
		}
	}
	require.NotEmpty(t, first)
	for _, id := range first {
		retries, lastErr, err := h.Row(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 1, retries, "one failed attempt")
		require.Contains(t, lastErr, fmt.Sprintf("publisher returned %d outcomes for %d messages", len(first)+1, len(first)))
	}
	require.Equal(t, int64(len(first)), r.Stats().PossibleDuplicates)
	require.Equal(t, int64(len(first)), r.Stats().Failed)
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	require.Equal(t, len(first), report.Duplicates)
}

// Liveness: a row that an older writer left without a topic, in its column or in
// its payload, is parked at once with the reason; the later events of its
// key wait, other keys go on.
func testMissingTopicParked(t *testing.T, h storetest.Harness, _ Broker) {
	ctx := context.Background()
	b := Recorder(t)
	check := faulttest.NewChecker()
	require.NoError(t, h.InsertLegacy(ctx, "order", "nt", "order.updated.v1", "nt", `{"data":{}}`))
	behind := b.event("nt", 1)
	commit(t, h, nil, behind)
	commit(t, h, check, b.event("other", 0))
	r, _ := Start(t, h.Store, b.Publisher, FastConfig())
	// The relay counts a parked row once the statement that parked it returned.
	Eventually(t, time.Minute, "the row without a topic parked and counted", func() bool {
		return count(t, h, "parked_at IS NOT NULL") == 1 && r.Stats().Parked == 1
	})
	Eventually(t, time.Minute, "other keys flow", func() bool { return check.Missing(b.Received()) == 0 })
	require.Equal(t, int64(1), count(t, h, `parked_at IS NOT NULL AND last_error LIKE '%invalid or missing topic ""%'`))
	require.Equal(t, int64(1), r.Stats().Parked)
	require.Zero(t, r.Stats().Failed, "parked at its first attempt")
	require.Zero(t, times(b, behind.ID), "an event behind a parked one waits")
}

// Liveness: a batch that found the broker unreachable on its first topic does not
// try the next one: that topic's events are put back without a publish, and
// go out once the broker is back.
func testOutageStopsBatch(t *testing.T, h storetest.Harness, _ Broker) {
	b := Recorder(t)
	flaky := b.flaky(0, 1)
	flaky.SetDown(fmt.Errorf("dial tcp 127.0.0.1:9: %w", outbox.ErrUnreachable))
	pub := &outcomes{Publisher: flaky}
	check := faulttest.NewChecker()
	first, second := b.event("a", 0), b.event("b", 0)
	second.Topic = "payments"
	commit(t, h, check, first, second)
	r, _ := Start(t, h.Store, pub, FastConfig())
	Eventually(t, time.Minute, "3 batches met the outage", func() bool { return pub.failures(first.ID, outbox.ErrUnreachable) >= 3 })
	require.Zero(t, pub.published(second.ID), "the second topic waited for the broker")
	flaky.SetDown(nil)
	Eventually(t, time.Minute, "both published after the outage", func() bool { return check.Missing(b.Received()) == 0 })
	report := check.Check(b.Received(), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	require.Zero(t, count(t, h, "retry_count > 0"))
}
