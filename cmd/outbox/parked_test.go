package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store"
)

// A parked event is retried from the command line and the relay command
// publishes it, and the event its key held back, in order.
func TestParkedRetry(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		topic := "orders-" + f.table
		parked := event(topic, "o-1", "order.placed.v1")
		f.park(t, parked, "kafka: message too large\nsecond line")
		behind := event(topic, "o-1", "order.paid.v1")
		f.add(t, behind)

		r := requireOK(t, f.cli(t, "parked", "list"))
		require.Contains(t, r.stdout, parked.ID.String())
		require.Contains(t, r.stdout, "kafka: message too large")
		require.NotContains(t, r.stdout, "second line")
		require.Contains(t, r.stdout, "1 of 1 parked events")
		r = requireOK(t, f.cli(t, "parked", "list", "--json"))
		var list []rowJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &list))
		require.Len(t, list, 1)
		require.Equal(t, "parked", list[0].State)
		require.Equal(t, 1, list[0].Attempts)

		r = requireOK(t, f.cli(t, "parked", "show", parked.ID.String()))
		require.Regexp(t, `state: +parked`, r.stdout)
		require.Contains(t, r.stdout, `"event_type": "order.placed.v1"`)
		require.Contains(t, r.stdout, "last error: kafka: message too large")

		r = requireOK(t, f.cli(t, "parked", "retry", parked.ID.String(), "--reason", "topic limit raised"))
		require.Contains(t, r.stdout, "retried "+parked.ID.String())
		row, err := f.st.GetEvent(t.Context(), parked.ID)
		require.NoError(t, err)
		require.Equal(t, "pending", row.State())
		require.Zero(t, row.Attempts)
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM outbox_audit WHERE table_name = $1 AND event_id = $2 AND action = 'retry'",
			f.table, parked.ID.String()))

		b := newBroker(t)
		ctx, cancel := context.WithCancel(t.Context())
		var stderr testenv.Buffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"relay", "--dsn", f.dsn, "--table", f.table, "--brokers", b.Addr(),
				"--metrics-addr", "", "--poll", "20ms"}, &testenv.Buffer{}, &stderr)
		}()
		recs := consumed(t, b.Addr(), topic, 2, 20*time.Second)
		cancel()
		require.Equal(t, 0, <-done, stderr.String())
		require.Len(t, recs, 2, stderr.String())
		require.Equal(t, parked.ID.String(), header(recs[0], outbox.HeaderMessageUUID))
		require.Equal(t, behind.ID.String(), header(recs[1], outbox.HeaderMessageUUID))

		r = f.cli(t, "parked", "retry", parked.ID.String())
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "is published, not parked")
	})
}

func TestParkedRetryKeyAndAll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "postgres")
	var events []outbox.Event
	for _, key := range []string{"a", "b", "c", "c"} {
		events = append(events, event("orders", key, "order.placed.v1"))
	}
	f.add(t, events...)
	c := f.claim(t)
	var fails []store.Failure
	for _, r := range c.Records {
		fails = append(fails, store.Failure{ID: r.ID, Err: "boom", Park: true})
	}
	require.NoError(t, f.st.Fail(t.Context(), c.Token, fails))

	require.Contains(t, requireOK(t, f.cli(t, "parked", "retry", "--key", "c")).stdout, "retried 2 parked events")
	require.Contains(t, requireOK(t, f.cli(t, "parked", "retry", "--all", "--limit", "1")).stdout, "retried 1 parked events")
	st, err := f.st.Stats(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(1), st.Parked)
	require.Contains(t, requireOK(t, f.cli(t, "parked", "retry", "--all")).stdout, "retried 1 parked events")
	require.Contains(t, requireOK(t, f.cli(t, "parked", "list")).stdout, "no parked events")
}

// A skipped event stays in the table with an audit record, and the later
// events of its key are claimed again.
func TestParkedSkip(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		parked := event("orders", "o-1", "order.placed.v1")
		f.park(t, parked, "invalid payload for consumers")
		behind := event("orders", "o-1", "order.paid.v1")
		f.add(t, behind)
		require.Empty(t, f.claim(t).Records, "the parked event holds its key")

		r := f.cli(t, "parked", "skip", parked.ID.String())
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "--reason is required")

		r = requireOK(t, f.cli(t, "parked", "skip", parked.ID.String(), "--reason", "bad data, fixed by hand", "--actor", "alice"))
		require.Contains(t, r.stdout, "later events of its key are released")
		row, err := f.st.GetEvent(t.Context(), parked.ID)
		require.NoError(t, err)
		require.Equal(t, "skipped", row.State())
		require.Regexp(t, `^skipped by alice at \S+: bad data, fixed by hand; last error: invalid payload for consumers$`, row.LastError)
		require.Equal(t, int64(1), f.scalar(t, `SELECT count(*) FROM outbox_audit WHERE table_name = $1 AND event_id = $2
			AND action = 'skip' AND actor = 'alice' AND reason = 'bad data, fixed by hand'`, f.table, parked.ID.String()))

		c := f.claim(t)
		require.Len(t, c.Records, 1)
		require.Equal(t, behind.ID, c.Records[0].ID)
		st, err := f.st.Stats(t.Context())
		require.NoError(t, err)
		require.Zero(t, st.Parked)
		rows, err := f.st.ListPublished(t.Context(), store.PublishedFilter{Limit: 10})
		require.NoError(t, err)
		require.Empty(t, rows, "a skipped event was never published")

		r = f.cli(t, "parked", "skip", parked.ID.String(), "--reason", "again")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "is skipped, not parked")
		r = f.cli(t, "parked", "skip", outbox.NewID().String(), "--reason", "x")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "event not found")
	})
}
