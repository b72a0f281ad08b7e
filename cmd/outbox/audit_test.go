package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/wire"
	"github.com/outboxkit/outbox/store"
)

// The audit compares a topic with the table. The events are claimed and
// marked published as a relay would, but the test chooses what reaches the
// topic: all of them, one left out, or one late.
func TestAudit(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		b := newBroker(t)
		pub, err := kafka.New(kafka.Config{Brokers: b.brokers})
		require.NoError(t, err)
		t.Cleanup(func() { pub.Close() })
		send := func(topic string, recs ...store.Record) {
			t.Helper()
			msgs := make([]*outbox.Message, len(recs))
			for i := range recs {
				msgs[i] = wire.Message(&recs[i])
			}
			for _, err := range pub.Publish(context.Background(), msgs) {
				require.NoError(t, err)
			}
		}
		audit := func(topic string) result {
			return f.cli(t, "audit", "--topic", topic, "--brokers", b.Addr())
		}
		write := func(topic string) []store.Record {
			f.add(t, event(topic, "k1", "a"), event(topic, "k1", "b"), event(topic, "k2", "a"),
				event(topic, "k2", "b"), event(topic, "", "unkeyed"))
			c := f.claim(t)
			require.Len(t, c.Records, 5)
			_, err := f.st.MarkPublished(t.Context(), c.Token, ids(c.Records))
			require.NoError(t, err)
			return c.Records
		}

		// Everything there, one event twice: duplicates are reported, and
		// allowed.
		goodTopic, badTopic := b.topic("good"), b.topic("bad")
		good := write(goodTopic)
		send(goodTopic, good...)
		send(goodTopic, good[0])
		r := requireOK(t, audit(goodTopic))
		require.Contains(t, r.stdout, "table: 5 published events")
		require.Contains(t, r.stdout, "missing from the topic: 0")
		require.Contains(t, r.stdout, "duplicates: 1 events delivered more than once (1 extra copies)")
		require.Contains(t, r.stdout, "OK: every published event is on the topic")

		// One event of k2 missing.
		recs := write(badTopic)
		lost := recs[2]
		send(badTopic, recs[0], recs[1], recs[3], recs[4])
		r = audit(badTopic)
		require.Equal(t, 3, r.code, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "missing from the topic: 1\n    "+lost.ID.String())
		require.Contains(t, r.stderr, "problems found: 1 missing, 0 out of order")

		// It arrives late, after the next event of its key.
		send(badTopic, lost)
		r = audit(badTopic)
		require.Equal(t, 3, r.code, r.stdout+r.stderr)
		require.Contains(t, r.stdout, "missing from the topic: 0")
		require.Contains(t, r.stdout, "out of order within their key: 1\n    "+lost.ID.String())

		missing := b.topic("no_such_topic")
		r = audit(missing)
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, `topic "`+missing+`" does not exist`)
		r = f.cli(t, "audit", "--topic", goodTopic, "--brokers", "127.0.0.1:1")
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "kafka at 127.0.0.1:1")
	})
}
