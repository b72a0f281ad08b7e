package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
)

func TestReplay(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		b := newBroker(t)
		topic, replayTopic := b.topic("orders"), b.topic("orders_replay")
		want := []outbox.Event{
			event(topic, "k1", "order.placed.v1"),
			event(topic, "k1", "order.placed.v1"),
			event(topic, "k2", "order.placed.v1"),
		}
		f.add(t, want[0], event(topic, "k1", "order.paid.v1"))
		f.add(t, want[1:]...)
		f.publishAll(t)
		f.add(t, event(topic, "k3", "order.placed.v1")) // pending: not delivered, not replayed

		r := f.cli(t, "replay", "--brokers", b.Addr())
		require.Equal(t, 2, r.code, "a replay must select its events")
		r = requireOK(t, f.cli(t, "replay", "--type", "order.placed.v1", "--dry-run"))
		require.Contains(t, r.stdout, "dry run: 3 events would be replayed")

		start := time.Now()
		r = requireOK(t, f.cli(t, "replay", "--type", "order.placed.v1", "--since", "1h", "--to-topic", replayTopic,
			"--rate", "20", "--batch", "2", "--brokers", b.Addr()))
		require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "3 events at 20/s take at least 0.1s")
		require.Regexp(t, `replayed 3 events in \S+, outbox_replay_id=\S+`, r.stdout)

		recs := consumed(t, b.Addr(), replayTopic, 3, 10*time.Second)
		require.Len(t, recs, 3)
		byID := map[string]int{}
		replayID := header(recs[0], headerReplayID)
		require.NotEmpty(t, replayID)
		for i, rec := range recs {
			byID[header(rec, outbox.HeaderMessageUUID)] = i
			require.Equal(t, replayID, header(rec, headerReplayID))
			require.Equal(t, topic, header(rec, headerOriginalTopic))
			require.Equal(t, "order.placed.v1", header(rec, outbox.HeaderEventType))
			published, err := time.Parse(time.RFC3339Nano, header(rec, headerOriginalPublishedAt))
			require.NoError(t, err)
			require.WithinDuration(t, time.Now(), published, time.Minute)
		}
		for _, e := range want {
			i, ok := byID[e.ID.String()]
			require.True(t, ok, "event %s replayed", e.ID)
			require.Equal(t, e.Key, string(recs[i].Key))
			require.JSONEq(t, string(e.Payload), string(recs[i].Value))
		}
		// Per-key order: the two k1 events share a partition and keep theirs.
		require.Less(t, byID[want[0].ID.String()], byID[want[1].ID.String()])

		r = requireOK(t, f.cli(t, "replay", "--aggregate", "order:agg-k2", "--brokers", b.Addr()))
		require.Contains(t, r.stdout, "replayed 1 events")
		recs = consumed(t, b.Addr(), topic, 1, 10*time.Second)
		require.Len(t, recs, 1)
		require.Equal(t, want[2].ID.String(), header(recs[0], outbox.HeaderMessageUUID))
		require.Empty(t, header(recs[0], headerOriginalTopic))
	})
}
