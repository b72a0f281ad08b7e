package e2e_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/storetest"
)

func event(topic, key string, i int) outbox.Event {
	id := outbox.NewID()
	return outbox.Event{
		ID: id, Topic: topic, AggregateType: "order", AggregateID: key, EventType: "order.updated.v1",
		Payload: fmt.Appendf(nil, `{"event_id":%q,"event_type":"order.updated.v1","data":{"key":%q,"n":%d}}`, id, key, i),
	}
}

func commit(t testing.TB, h storetest.Harness, c *faulttest.Checker, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	tx, err := h.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.Add(ctx, events...))
	require.NoError(t, tx.Commit(ctx))
	c.Committed(events...)
}

// writeSteadily commits n events, one per tick at rate events/s over keys,
// each in its own transaction, and returns when done. A slow machine writes
// them more slowly, never fewer.
func writeSteadily(t *testing.T, h storetest.Harness, c *faulttest.Checker, topic string, keys, rate, n int) {
	t.Helper()
	writeUntil(t, h, c, topic, keys, rate, func(i int) bool { return i == n })
}

// writeUntil commits events as writeSteadily does until stop(i) holds
// before the i-th (from 0), and returns how many it wrote.
func writeUntil(t *testing.T, h storetest.Harness, c *faulttest.Checker, topic string, keys, rate int, stop func(i int) bool) int {
	t.Helper()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	i := 0
	for ; !stop(i); i++ {
		<-tick.C
		commit(t, h, c, event(topic, fmt.Sprint("key-", i%keys), i))
	}
	return i
}

// waitReceived waits until the consumer received at least n messages,
// failing when none arrived for timeout.
func waitReceived(t *testing.T, tc *testenv.KafkaConsumer, n int, timeout time.Duration) {
	t.Helper()
	last, since := -1, time.Now()
	for got := len(tc.Received()); got < n; got = len(tc.Received()) {
		if got != last {
			last, since = got, time.Now()
		} else if time.Since(since) > timeout {
			t.Fatalf("%d of %d messages received, none for %v", got, n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSettled waits until no event of h's table is pending: every committed
// event was published and marked, also those that a killed relay left
// leased, which another relay claims again once their lease expired. After
// that, a relay that is stopped or idle publishes nothing more, and the
// topic can be checked as it is (testenv.KafkaReceived).
func waitSettled(t *testing.T, h storetest.Harness, timeout time.Duration) {
	t.Helper()
	relaytest.Eventually(t, timeout, "no pending event", func() bool { return count(t, h, "published_at IS NULL AND parked_at IS NULL") == 0 })
}

func count(t *testing.T, h storetest.Harness, where string) int64 {
	t.Helper()
	n, err := h.Count(context.Background(), where)
	require.NoError(t, err)
	return n
}

// harnesses are the databases the fault tests run on.
var harnesses = []struct {
	dialect string
	new     func(*testing.T) storetest.Harness
}{{"postgres", testenv.PostgresHarness}, {"mysql", testenv.MySQLHarness}, {"sqlite", testenv.SQLiteHarness}}

// tableOf returns the outbox table of a harness's store.
func tableOf(h storetest.Harness) string {
	return h.Store.(interface{ Table() string }).Table()
}
