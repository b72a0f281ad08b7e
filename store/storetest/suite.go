package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// Run runs the conformance suite. newHarness is called once per subtest and
// must return a harness over its own empty table.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"AtomicWrites", testAtomicWrites},
		{"ValidationKeepsTxUsable", testValidationKeepsTxUsable},
		{"OutOfOrderCommit", testOutOfOrderCommit},
		{"RoundTrip", testRoundTrip},
		{"CallOrderIsSeqOrder", testCallOrder},
		{"ConcurrentClaimersDisjoint", testConcurrentClaimers},
		{"PerKeyBlocking", testPerKeyBlocking},
		{"PerKeyAcrossTopics", testPerKeyAcrossTopics},
		{"LeaseExpiryAndFencing", testLeaseExpiry},
		{"TakeoverFencesEverySettle", testTakeoverFencing},
		{"PartialReclaimKeepsReclaimed", testPartialReclaim},
		{"EndedClaimStillSettles", testEndedClaimSettles},
		{"SettledClaimGoes", testSettledClaimGoes},
		{"PublishAndDelete", testPublishAndDelete},
		{"Backoff", testBackoff},
		{"Parking", testParking},
		{"DeepBlockedBacklog", testDeepBlockedBacklog},
		{"DeepLeasedBacklog", testDeepLeasedBacklog},
		{"Release", testRelease},
		{"Cleanup", testCleanup},
		{"NoRangeLocks", testNoRangeLocks},
		{"Stats", testStats},
		{"LegacyRows", testLegacyRows},
		{"LargeCall", testLargeCall},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if h.OneWriter && (tc.name == "OutOfOrderCommit" || tc.name == "NoRangeLocks") {
				return // see Harness.OneWriter
			}
			tc.fn(t, h)
		})
	}
}

const lease = 30 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ev returns a valid event for key.
func ev(key string) outbox.Event {
	id := outbox.NewID()
	return outbox.Event{
		ID: id, Topic: "orders", AggregateType: "order", AggregateID: key, EventType: "order.created.v1",
		Payload: fmt.Appendf(nil, `{"event_id":%q,"data":{"key":%q}}`, id, key),
	}
}

func write(t *testing.T, h Harness, events ...outbox.Event) {
	t.Helper()
	ctx := ctxT(t)
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, events...))
	require.NoError(t, tx.Commit(ctx))
}

// claimAll claims and marks published until nothing is left; it returns the
// IDs in claim order.
func claimAll(t *testing.T, h Harness) []uuid.UUID {
	t.Helper()
	ctx := ctxT(t)
	var ids []uuid.UUID
	for {
		c, err := h.Store.Claim(ctx, store.ClaimParams{Owner: "test", Limit: 100, Lease: lease})
		require.NoError(t, err)
		if len(c.Records) == 0 {
			return ids
		}
		batch := recIDs(c.Records)
		n, err := h.Store.MarkPublished(ctx, c.Token, batch)
		require.NoError(t, err)
		require.Equal(t, len(batch), n)
		ids = append(ids, batch...)
	}
}

func recIDs(rs []store.Record) []uuid.UUID {
	ids := make([]uuid.UUID, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

func claim(t *testing.T, h Harness, limit int, l time.Duration) store.Claim {
	t.Helper()
	c, err := h.Store.Claim(ctxT(t), store.ClaimParams{Owner: "test", Limit: limit, Lease: l})
	require.NoError(t, err)
	return c
}

// Atomic: nothing from a rolled-back transaction, savepoint or failed statement;
// absence is proven by a sentinel committed afterwards.
func testAtomicWrites(t *testing.T, h Harness) {
	ctx := ctxT(t)
	committed, rolledBack, savepointed, failed, sentinel := ev("a"), ev("b"), ev("c"), ev("d"), ev("s")

	write(t, h, committed)

	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, rolledBack))
	require.NoError(t, tx.Rollback(ctx))

	kept := ev("c")
	tx, err = h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, kept))
	require.NoError(t, tx.Savepoint(ctx, "sp1"))
	require.NoError(t, tx.Add(ctx, savepointed))
	require.NoError(t, tx.RollbackTo(ctx, "sp1"))
	require.NoError(t, tx.Commit(ctx))

	// A statement that fails (the second event reuses the first one's ID)
	// writes none of its events; the transaction then commits what it
	// wrote before (or aborts, as PostgreSQL does).
	tx, err = h.Begin(ctx)
	require.NoError(t, err)
	dup := failed
	dup.Key = "d2"
	require.Error(t, tx.Add(ctx, failed, dup))
	_ = tx.Commit(ctx)

	write(t, h, sentinel)
	got := claimAll(t, h)
	require.Equal(t, []uuid.UUID{committed.ID, kept.ID, sentinel.ID}, got)
}

func testValidationKeepsTxUsable(t *testing.T, h Harness) {
	ctx := ctxT(t)
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	bad := ev("a")
	bad.Payload = []byte(`{"not json"`)
	err = tx.Add(ctx, bad)
	require.ErrorIs(t, err, outbox.ErrInvalidPayload)
	require.ErrorIs(t, err, outbox.ErrInvalidEvent)
	good := ev("a")
	require.NoError(t, tx.Add(ctx, good))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, []uuid.UUID{good.ID}, claimAll(t, h))
}

// A lower seq committed after a higher one is still claimed.
func testOutOfOrderCommit(t *testing.T, h Harness) {
	ctx := ctxT(t)
	early, late := ev("k1"), ev("k2")
	tx1, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx1.Add(ctx, early))
	write(t, h, late)
	require.Equal(t, []uuid.UUID{late.ID}, claimAll(t, h))
	require.NoError(t, tx1.Commit(ctx))
	require.Equal(t, []uuid.UUID{early.ID}, claimAll(t, h))
}

func testRoundTrip(t *testing.T, h Harness) {
	e := ev("key-1")
	e.Payload = []byte("{ \"b\": 1,\n  \"a\": [\"ü\", \"\\\\u0000\"] }")
	e.Headers = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x": "y"}
	unordered := outbox.Event{Topic: "audit", EventType: "audit.v1", Payload: []byte(`{}`), Unordered: true}
	ctx := outbox.WithCorrelationID(ctxT(t), "corr-1")
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, e, unordered))
	require.NoError(t, tx.Commit(ctx))

	c := claim(t, h, 10, lease)
	require.Len(t, c.Records, 2)
	r := c.Records[0]
	require.Equal(t, e.ID, r.ID)
	require.True(t, bytes.Equal(e.Payload, r.Payload), "payload bytes: %q", r.Payload)
	require.Equal(t, "orders", r.Topic)
	require.Equal(t, "key-1", r.Key)
	require.Equal(t, "order", r.AggregateType)
	require.Equal(t, "key-1", r.AggregateID)
	require.Equal(t, "order.created.v1", r.EventType)
	require.Equal(t, e.Headers["traceparent"], r.Headers["traceparent"])
	require.Equal(t, "corr-1", r.Headers[outbox.HeaderCorrelationID])
	require.Zero(t, r.Attempts)
	require.False(t, r.Reclaimed)
	require.WithinDuration(t, c.Now, r.CreatedAt, time.Minute)
	u := c.Records[1]
	require.Equal(t, "", u.Key)
	require.Equal(t, "audit", u.Topic)
	require.NotEmpty(t, u.Headers[outbox.HeaderCorrelationID], "a correlation ID is generated")
	require.NotEqual(t, uuid.Nil, u.ID)
}

func testCallOrder(t *testing.T, h Harness) {
	var events []outbox.Event
	for i := range 20 {
		events = append(events, ev(fmt.Sprintf("k%d", i%3)))
	}
	write(t, h, events...)
	c := claim(t, h, 100, lease)
	require.Len(t, c.Records, 20)
	for i, r := range c.Records {
		require.Equal(t, events[i].ID, r.ID)
		if i > 0 {
			require.Greater(t, r.Seq, c.Records[i-1].Seq)
		}
	}
}

func testConcurrentClaimers(t *testing.T, h Harness) {
	const n = 600
	var events []outbox.Event
	for i := range n {
		events = append(events, ev(fmt.Sprintf("k%d", i%40)))
	}
	for i := 0; i < n; i += 100 {
		write(t, h, events[i:i+100]...)
	}
	ctx := ctxT(t)
	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			empty := 0
			for empty < 3 {
				c, err := h.Store.Claim(ctx, store.ClaimParams{Owner: fmt.Sprint("w", w), Limit: 25, Lease: lease})
				if err != nil {
					t.Error(err)
					return
				}
				if len(c.Records) == 0 {
					empty++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				empty = 0
				mu.Lock()
				for _, r := range c.Records {
					seen[r.ID]++
				}
				mu.Unlock()
				if _, err := h.Store.MarkPublished(ctx, c.Token, recIDs(c.Records)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.Len(t, seen, n)
	for id, k := range seen {
		require.Equal(t, 1, k, "event %s claimed %d times", id, k)
	}
}

// A key's later event is not claimed while an earlier one is leased; other
// keys are.
func testPerKeyBlocking(t *testing.T, h Harness) {
	a1, a2, b1 := ev("a"), ev("a"), ev("b")
	write(t, h, a1, a2, b1)
	c1 := claim(t, h, 1, lease)
	require.Equal(t, []uuid.UUID{a1.ID}, recIDs(c1.Records))
	c2 := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{b1.ID}, recIDs(c2.Records), "a2 must wait for a1")
	_, err := h.Store.MarkPublished(ctxT(t), c1.Token, recIDs(c1.Records))
	require.NoError(t, err)
	c3 := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{a2.ID}, recIDs(c3.Records))
	// Several events of one key may share a batch.
	a3, a4 := ev("a"), ev("a")
	_, err = h.Store.MarkPublished(ctxT(t), c3.Token, recIDs(c3.Records))
	require.NoError(t, err)
	write(t, h, a3, a4)
	require.Equal(t, []uuid.UUID{a3.ID, a4.ID}, recIDs(claim(t, h, 10, lease).Records))
}

// A key's events go out in write order whatever their topic: an event that
// is leased, backing off or parked holds back its key's later events on
// other topics too.
func testPerKeyAcrossTopics(t *testing.T, h Harness) {
	ctx := ctxT(t)
	onTopic := func(key, topic string) outbox.Event {
		e := ev(key)
		e.Topic = topic
		return e
	}
	leased, backoff, parked := ev("l"), ev("b"), ev("p")
	held := []outbox.Event{onTopic("l", "payments"), onTopic("b", "payments"), onTopic("p", "shipments")}
	write(t, h, leased, backoff, parked)
	write(t, h, held...)
	c := claim(t, h, 3, lease)
	require.Equal(t, []uuid.UUID{leased.ID, backoff.ID, parked.ID}, recIDs(c.Records))
	require.NoError(t, h.Store.Fail(ctx, c.Token, []store.Failure{
		{ID: backoff.ID, Err: "boom", Delay: time.Hour}, {ID: parked.ID, Err: "poison", Park: true}}))
	other := onTopic("o", "payments")
	write(t, h, other)
	require.Equal(t, []uuid.UUID{other.ID}, recIDs(claim(t, h, 10, lease).Records))
}

func testLeaseExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := ev("a"), ev("a")
	write(t, h, a, b)
	// Long enough that the next claim comes within it on a loaded machine.
	first := claim(t, h, 1, 2*time.Second)
	require.Equal(t, []uuid.UUID{a.ID}, recIDs(first.Records))
	require.Empty(t, claim(t, h, 10, lease).Records, "leased a blocks b")
	time.Sleep(2100 * time.Millisecond)
	second := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{a.ID, b.ID}, recIDs(second.Records))
	require.True(t, second.Records[0].Reclaimed, "a was claimed before and never settled")
	require.False(t, second.Records[1].Reclaimed)
	require.NotEqual(t, first.Token, second.Token)

	n, err := h.Store.MarkPublished(ctx, first.Token, []uuid.UUID{a.ID})
	require.NoError(t, err)
	require.Zero(t, n, "the old token is fenced off")
	require.NoError(t, h.Store.Fail(ctx, first.Token, []store.Failure{{ID: a.ID, Err: "x", Park: true}}))
	require.NoError(t, h.Store.Release(ctx, first.Token, []uuid.UUID{a.ID}, 0))
	n, err = h.Store.MarkPublished(ctx, second.Token, []uuid.UUID{a.ID, b.ID})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	st, err := h.Store.Stats(ctx)
	require.NoError(t, err)
	require.Zero(t, st.Parked, "a fenced Fail parks nothing")
}

// After another claim took the events of an ended claim over, the ended
// claim settles none of them: no mark, no failure, no release with a delay
// (nor one without, which would let the key's later events pass), no delete.
func testTakeoverFencing(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b, c, d, e, later := ev("a"), ev("b"), ev("c"), ev("d"), ev("e"), ev("a")
	write(t, h, a, b, c, d, e)
	write(t, h, later)
	first := claim(t, h, 5, 200*time.Millisecond)
	require.Equal(t, []uuid.UUID{a.ID, b.ID, c.ID, d.ID, e.ID}, recIDs(first.Records))
	time.Sleep(400 * time.Millisecond)
	// The second claim takes four of the five: e stays with the first.
	second := claim(t, h, 4, lease)
	require.Equal(t, []uuid.UUID{a.ID, b.ID, c.ID, d.ID}, recIDs(second.Records))

	n, err := h.Store.MarkPublished(ctx, first.Token, []uuid.UUID{a.ID})
	require.NoError(t, err)
	require.Zero(t, n, "a fenced mark marks nothing")
	require.NoError(t, h.Store.Fail(ctx, first.Token, []store.Failure{{ID: b.ID, Err: "x", Park: true}}))
	require.NoError(t, h.Store.Release(ctx, first.Token, []uuid.UUID{c.ID}, time.Hour))
	if del, ok := h.Store.(store.Deleter); ok {
		n, err := del.DeletePublishedNow(ctx, first.Token, []uuid.UUID{d.ID})
		require.NoError(t, err)
		require.Zero(t, n, "a fenced delete deletes nothing")
	}
	require.NoError(t, h.Store.Release(ctx, first.Token, []uuid.UUID{a.ID}, 0))
	changed, err := h.Count(ctx, "retry_count > 0 OR next_attempt_at IS NOT NULL OR parked_at IS NOT NULL")
	require.NoError(t, err)
	require.Zero(t, changed, "the first claim changed none of the second's events")
	third := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{e.ID}, recIDs(third.Records), "the second claim still holds key a")
	n, err = h.Store.MarkPublished(ctx, second.Token, recIDs(second.Records))
	require.NoError(t, err)
	require.Equal(t, 4, n)
	n, err = h.Store.MarkPublished(ctx, third.Token, []uuid.UUID{e.ID})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []uuid.UUID{later.ID}, claimAll(t, h))
}

// An ended claim's events keep their Reclaimed flag until every one of them
// is claimed again, also when each later claim takes only some of them; an
// event that no ended claim held is not flagged.
func testPartialReclaim(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a1, a2, b, c := ev("a"), ev("a"), ev("b"), ev("c")
	write(t, h, a1, a2, b)
	first := claim(t, h, 10, 200*time.Millisecond)
	require.Len(t, first.Records, 3)
	write(t, h, c)
	time.Sleep(400 * time.Millisecond)
	for _, want := range [][]uuid.UUID{{a1.ID}, {a2.ID}, {b.ID, c.ID}} {
		next := claim(t, h, len(want), lease)
		require.Equal(t, want, recIDs(next.Records))
		for _, r := range next.Records {
			require.Equal(t, r.ID != c.ID, r.Reclaimed, "event %d", r.Seq)
		}
		n, err := h.Store.MarkPublished(ctx, next.Token, recIDs(next.Records))
		require.NoError(t, err)
		require.Equal(t, len(want), n)
	}
	claims, err := h.Claims(ctx)
	require.NoError(t, err)
	require.Zero(t, claims, "the ended claim went once its events were taken over")
}

// A claim whose lease ended while nobody claimed its events again still
// settles them, and goes.
func testEndedClaimSettles(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := ev("a"), ev("b")
	write(t, h, a, b)
	c := claim(t, h, 10, 100*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	n, err := h.Store.MarkPublished(ctx, c.Token, []uuid.UUID{a.ID})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, h.Store.Fail(ctx, c.Token, []store.Failure{{ID: b.ID, Err: "boom", Delay: time.Hour}}))
	retries, _, err := h.Row(ctx, b.ID)
	require.NoError(t, err)
	require.Equal(t, 1, retries)
	claims, err := h.Claims(ctx)
	require.NoError(t, err)
	require.Zero(t, claims)
}

// A claim holds its keys until each of its events is settled, whichever way,
// and then leaves nothing behind.
func testSettledClaimGoes(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a1, a2, b1, b2, c1, c2 := ev("a"), ev("a"), ev("b"), ev("b"), ev("c"), ev("c")
	write(t, h, a1, b1, c1)
	write(t, h, a2, b2, c2)
	first := claim(t, h, 3, lease)
	require.Equal(t, []uuid.UUID{a1.ID, b1.ID, c1.ID}, recIDs(first.Records))
	claims := func() int64 {
		n, err := h.Claims(ctx)
		require.NoError(t, err)
		return n
	}
	require.Equal(t, int64(1), claims())
	n, err := h.Store.MarkPublished(ctx, first.Token, []uuid.UUID{a1.ID})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, h.Store.Release(ctx, first.Token, []uuid.UUID{b1.ID}, 0))
	require.Empty(t, claim(t, h, 10, lease).Records, "the claim still holds a, b and c")
	require.Equal(t, int64(1), claims())
	require.NoError(t, h.Store.Fail(ctx, first.Token, []store.Failure{{ID: c1.ID, Err: "boom", Delay: time.Hour}}))
	require.Zero(t, claims(), "settled: the claim is gone")
	next := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{b1.ID, a2.ID, b2.ID}, recIDs(next.Records), "c waits for c1's backoff")
	require.False(t, next.Records[0].Reclaimed, "a released event is not a possible duplicate")
}

// Publish-and-delete: the events the broker accepted are deleted instead of
// marked, fenced by the claim, and their keys flow on.
func testPublishAndDelete(t *testing.T, h Harness) {
	ctx := ctxT(t)
	d, ok := h.Store.(store.Deleter)
	require.True(t, ok, "the store implements store.Deleter")
	a1, a2, b := ev("a"), ev("a"), ev("b")
	write(t, h, a1, b)
	write(t, h, a2)
	c := claim(t, h, 2, lease)
	require.Equal(t, []uuid.UUID{a1.ID, b.ID}, recIDs(c.Records))
	n, err := d.DeletePublishedNow(ctx, c.Token, []uuid.UUID{a1.ID, b.ID})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = d.DeletePublishedNow(ctx, c.Token, []uuid.UUID{a1.ID, b.ID})
	require.NoError(t, err)
	require.Zero(t, n, "settled once")
	left, err := h.Count(ctx, "1 = 1")
	require.NoError(t, err)
	require.Equal(t, int64(1), left)
	require.Equal(t, []uuid.UUID{a2.ID}, claimAll(t, h))
}

func testBackoff(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b, other := ev("a"), ev("a"), ev("z")
	write(t, h, a, b)
	c := claim(t, h, 1, lease)
	require.NoError(t, h.Store.Fail(ctx, c.Token, []store.Failure{{ID: a.ID, Err: "boom", Delay: 400 * time.Millisecond}}))
	write(t, h, other)
	require.Equal(t, []uuid.UUID{other.ID}, recIDs(claim(t, h, 10, lease).Records), "a backs off and blocks b")
	time.Sleep(500 * time.Millisecond)
	again := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{a.ID, b.ID}, recIDs(again.Records))
	require.Equal(t, 1, again.Records[0].Attempts)
	require.False(t, again.Records[0].Reclaimed, "a settled failure is not a possible duplicate")
}

func testParking(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b, other := ev("a"), ev("a"), ev("z")
	write(t, h, a, b, other)
	c := claim(t, h, 1, lease)
	require.NoError(t, h.Store.Fail(ctx, c.Token, []store.Failure{{ID: a.ID, Err: "poison", Park: true}}))
	require.Equal(t, []uuid.UUID{other.ID}, recIDs(claim(t, h, 10, lease).Records), "parked a blocks b, not other keys")
	st, err := h.Store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Parked)
	require.Equal(t, int64(2), st.Pending, "b and the claimed other are pending")
}

// Liveness with a deep backlog: a key held back by a backoff or a parked event may
// have far more events than a claim reads; they must not stop other keys.
func testDeepBlockedBacklog(t *testing.T, h Harness) {
	ctx := ctxT(t)
	const limit, deep = 10, 300
	// hold writes a backlog of key and claims its first event.
	hold := func(key string) store.Claim {
		backlog := make([]outbox.Event, deep+1)
		for i := range backlog {
			backlog[i] = ev(key)
		}
		write(t, h, backlog...)
		c := claim(t, h, 1, lease)
		require.Equal(t, []uuid.UUID{backlog[0].ID}, recIDs(c.Records))
		return c
	}
	b := hold("backoff")
	require.NoError(t, h.Store.Fail(ctx, b.Token, []store.Failure{{ID: b.Records[0].ID, Err: "boom", Delay: time.Hour}}))
	p := hold("parked")
	require.NoError(t, h.Store.Fail(ctx, p.Token, []store.Failure{{ID: p.Records[0].ID, Err: "poison", Park: true}}))
	other := ev("other")
	write(t, h, other)
	require.Equal(t, []uuid.UUID{other.ID}, recIDs(claim(t, h, limit, lease).Records))
}

// Liveness with a deep backlog behind a claim: a claim may return nothing
// while the backlog it reads is held by another claim, but once that claim
// is settled everything flows, the key in order and the other keys behind
// it. (Claims whose lease ended: LeaseExpiryAndFencing.)
func testDeepLeasedBacklog(t *testing.T, h Harness) {
	const deep = 300 // far more than a claim of 10 reads
	backlog := make([]outbox.Event, deep)
	for i := range backlog {
		backlog[i] = ev("leased")
	}
	other := ev("other")
	write(t, h, backlog...)
	write(t, h, other)
	first := claim(t, h, 1, lease)
	require.Equal(t, []uuid.UUID{backlog[0].ID}, recIDs(first.Records))
	otherClaimed := false
	for _, id := range recIDs(claim(t, h, 10, lease).Records) {
		require.Equal(t, other.ID, id, "only other may pass the leased key")
		otherClaimed = true
	}
	// The claim settles its event without publishing it: the key is free.
	require.NoError(t, h.Store.Release(ctxT(t), first.Token, recIDs(first.Records), 0))
	var want []uuid.UUID
	for _, e := range backlog {
		want = append(want, e.ID)
	}
	var got []uuid.UUID
	for _, id := range claimAll(t, h) {
		if id == other.ID {
			otherClaimed = true
			continue
		}
		got = append(got, id)
	}
	require.Equal(t, want, got, "once the claim went, the key's backlog in order")
	require.True(t, otherClaimed)
}

func testRelease(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := ev("a"), ev("b")
	write(t, h, a, b)
	c := claim(t, h, 10, lease)
	require.NoError(t, h.Store.Release(ctx, c.Token, []uuid.UUID{a.ID}, 0))
	require.NoError(t, h.Store.Release(ctx, c.Token, []uuid.UUID{b.ID}, 400*time.Millisecond))
	again := claim(t, h, 10, lease)
	require.Equal(t, []uuid.UUID{a.ID}, recIDs(again.Records))
	require.Zero(t, again.Records[0].Attempts, "release counts no attempt")
	require.False(t, again.Records[0].Reclaimed)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, []uuid.UUID{b.ID}, recIDs(claim(t, h, 10, lease).Records))
}

// The janitor deletes settled events past the retention, published or
// skipped, in bounded chunks, and never pending or parked ones.
func testCleanup(t *testing.T, h Harness) {
	ctx := ctxT(t)
	var published []outbox.Event
	for i := range 5 {
		published = append(published, ev(fmt.Sprint("p", i)))
	}
	write(t, h, published...)
	require.Len(t, claimAll(t, h), 5)
	parked, skipped, pending := ev("x"), ev("s"), ev("y")
	write(t, h, parked, skipped)
	c := claim(t, h, 10, lease)
	require.NoError(t, h.Store.Fail(ctx, c.Token, []store.Failure{
		{ID: parked.ID, Err: "poison", Park: true}, {ID: skipped.ID, Err: "poison", Park: true}}))
	admin, ok := h.Store.(store.Admin)
	require.True(t, ok, "the store implements store.Admin")
	require.NoError(t, admin.SkipParked(ctx, skipped.ID, store.Action{Actor: "test", Reason: "cleanup"}))
	write(t, h, pending)

	n, err := h.Store.DeletePublished(ctx, time.Hour, 100)
	require.NoError(t, err)
	require.Zero(t, n, "younger than the retention")
	require.NoError(t, h.AgePublished(ctx, 2*time.Hour))
	n, err = h.Store.DeletePublished(ctx, time.Hour, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "bounded chunk")
	n, err = h.Store.DeletePublished(ctx, time.Hour, 100)
	require.NoError(t, err)
	require.Equal(t, 4, n, "the other published events and the skipped one")
	_, err = admin.GetEvent(ctx, skipped.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "a skipped event is settled: the retention applies to it")
	st, err := h.Store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Pending)
	require.Equal(t, int64(1), st.Parked)
	require.Equal(t, []uuid.UUID{pending.ID}, claimAll(t, h))
}

func testStats(t *testing.T, h Harness) {
	ctx := ctxT(t)
	st, err := h.Store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Stats{}, st)
	write(t, h, ev("a"), ev("b"))
	time.Sleep(50 * time.Millisecond)
	st, err = h.Store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), st.Pending)
	require.GreaterOrEqual(t, st.OldestPendingAge, 40*time.Millisecond)
	require.Less(t, st.OldestPendingAge, time.Minute)
}

func testLegacyRows(t *testing.T, h Harness) {
	ctx := ctxT(t)
	data := `{"event_id": "6f1c1f4e-8a55-4bb4-9d0b-2a9c4d9a9d11", "event_type": "huleedu.file.essay.content.provisioned.v1", "correlation_id": "c-42", "data": {}, "topic": "huleedu.file.essay.content.provisioned.v1"}`
	require.NoError(t, h.InsertLegacy(ctx, "file_upload", "f-1", "huleedu.file.essay.content.provisioned.v1", "f-1", data))
	c := claim(t, h, 10, lease)
	require.Len(t, c.Records, 1)
	r := c.Records[0]
	require.Equal(t, "huleedu.file.essay.content.provisioned.v1", r.Topic, "topic read from event_data")
	require.Equal(t, "f-1", r.Key)
	require.Equal(t, data, string(r.Payload))
	require.NotEqual(t, uuid.Nil, r.ID)
	require.Zero(t, r.Attempts)
}

// The relay's statements take no range locks, so they never make a business
// transaction wait, or deadlock with it. Each statement that settles a claim
// or cleans up is held up on a row that a business transaction holds; while
// it waits, a writer inserts events with IDs before, between and after the
// rows it touches, and commits without waiting for it. (At MySQL's default
// REPEATABLE READ these statements took next-key locks, and such inserts
// waited, or deadlocked.)
func testNoRangeLocks(t *testing.T, h Harness) {
	ctx := ctxT(t)
	round := byte(0)
	// write writes events whose IDs start with the given bytes.
	write := func(his ...byte) []outbox.Event {
		round++
		var events []outbox.Event
		for _, hi := range his {
			events = append(events, evAt(hi, round))
		}
		write(t, h, events...)
		return events
	}
	// whileHeld runs op while the row of held is locked, waits until op
	// waits for it, and then writes around the rows op touches.
	whileHeld := func(name string, held uuid.UUID, op func() error) {
		unlock, err := h.Lock(ctx, held)
		require.NoError(t, err)
		// A failing test must not leave the lock held: the table could not
		// be dropped.
		release := sync.OnceValue(unlock)
		t.Cleanup(func() { _ = release() })
		opDone := make(chan error, 1)
		go func() { opDone <- op() }()
		if !waitLockWaits(t, h, 1, opDone) {
			t.Fatalf("%s did not wait for the locked row: %v", name, <-opDone)
		}
		round++
		var around []outbox.Event
		for _, hi := range []byte{0x00, 0x10, 0x30, 0x50, 0x70, 0x90, 0xb0, 0xd0, 0xff} {
			around = append(around, evAt(hi, round))
		}
		writerDone := make(chan error, 1)
		go func() {
			tx, err := h.Begin(ctx)
			if err == nil {
				if err = tx.Add(ctx, around...); err == nil {
					err = tx.Commit(ctx)
				} else {
					_ = tx.Rollback(ctx)
				}
			}
			writerDone <- err
		}()
		// Either the writer commits, or it waits too (behind op).
		blocked := waitLockWaits(t, h, 2, writerDone)
		require.NoError(t, release())
		require.NoError(t, <-opDone, name)
		require.NoError(t, <-writerDone, "writer beside %s", name)
		if blocked {
			t.Errorf("a writer's insert waited for %s: it holds range locks", name)
		}
	}
	// claimed claims every pending event; the statement under test holds
	// up on the one with the highest ID, after the others.
	claimed := func() (store.Claim, uuid.UUID) {
		c := claim(t, h, 100, lease)
		require.NotEmpty(t, c.Records)
		held := slices.MaxFunc(recIDs(c.Records), func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		return c, held
	}

	write(0x20, 0x40, 0x60, 0x80, 0xa0, 0xc0, 0xe0)
	c, held := claimed()
	whileHeld("MarkPublished", held, func() error {
		n, err := h.Store.MarkPublished(ctx, c.Token, recIDs(c.Records))
		if err == nil && n != len(c.Records) {
			err = fmt.Errorf("marked %d of %d", n, len(c.Records))
		}
		return err
	})
	c, held = claimed()
	whileHeld("Fail", held, func() error {
		var fs []store.Failure
		for _, r := range c.Records {
			fs = append(fs, store.Failure{ID: r.ID, Err: "poison", Park: true})
		}
		return h.Store.Fail(ctx, c.Token, fs)
	})
	c, held = claimed()
	whileHeld("Release", held, func() error {
		return h.Store.Release(ctx, c.Token, recIDs(c.Records), time.Hour)
	})
	// The janitor holds up on the newest published event: the one with
	// the highest ID, published last.
	write(0x20, 0x40, 0x60, 0x80, 0xa0, 0xc0, 0xe0)
	c, held = claimed()
	for _, r := range c.Records {
		if r.ID != held {
			n, err := h.Store.MarkPublished(ctx, c.Token, []uuid.UUID{r.ID})
			require.NoError(t, err)
			require.Equal(t, 1, n)
		}
	}
	n, err := h.Store.MarkPublished(ctx, c.Token, []uuid.UUID{held})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, h.AgePublished(ctx, 2*time.Hour))
	old, err := h.Count(ctx, "published_at IS NOT NULL")
	require.NoError(t, err)
	whileHeld("DeletePublished", held, func() error {
		n, err := h.Store.DeletePublished(ctx, time.Hour, 100)
		if err == nil && int64(n) != old {
			err = fmt.Errorf("deleted %d of %d", n, old)
		}
		return err
	})
}

// evAt returns an event whose ID starts with the bytes hi and round, so that
// it takes a chosen place in the primary key.
func evAt(hi, round byte) outbox.Event {
	e := ev(fmt.Sprintf("k-%x-%d", hi, round))
	e.ID = uuid.New()
	e.ID[0], e.ID[1] = hi, round
	return e
}

// waitLockWaits waits until n statements on the table wait for a lock, and
// reports true, or until done delivers, and reports false after putting the
// value back.
func waitLockWaits(t *testing.T, h Harness, n int, done chan error) bool {
	t.Helper()
	ctx := ctxT(t)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			done <- err
			return false
		case <-ctx.Done():
			t.Fatalf("waiting for %d statements to wait for a lock: %v", n, ctx.Err())
		case <-tick.C:
			waits, err := h.LockWaits(ctx)
			require.NoError(t, err)
			if waits >= n {
				return true
			}
		}
	}
}

// A call with more events than one statement of some databases takes
// (MySQL's 65,535 and SQLite's 32,766 bind parameters) writes them all, in
// the call's order; when its last event fails, it writes none, and the
// transaction commits what it wrote before.
func testLargeCall(t *testing.T, h Harness) {
	ctx := ctxT(t)
	const n = 9000
	events := make([]outbox.Event, n)
	for i := range events {
		events[i] = ev(fmt.Sprint("k", i))
	}
	write(t, h, events...)
	c := claim(t, h, n, time.Minute)
	require.Equal(t, eventIDs(events), recIDs(c.Records), "all of them, in the call's order")

	failing := make([]outbox.Event, n)
	for i := range failing {
		failing[i] = ev("f")
	}
	failing[n-1].ID = failing[0].ID // the last statement fails
	kept := ev("kept")
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, kept))
	require.Error(t, tx.Add(ctx, failing...))
	want := int64(n)
	if tx.Commit(ctx) == nil { // PostgreSQL aborts the transaction instead
		want++
	}
	got, err := h.Count(ctx, "1 = 1")
	require.NoError(t, err)
	require.Equal(t, want, got, "the failed call wrote none of its events")
}

func eventIDs(events []outbox.Event) []uuid.UUID {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}
