package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// purge deletes old settled events in chunks, published or skipped (the
// skip's audit record stays), and leaves pending and parked events alone,
// however old.
func TestPurge(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		for range 5 {
			f.add(t, event("orders", "", "order.placed.v1"))
		}
		f.publishAll(t)
		f.exec(t, "UPDATE {t} SET published_at = "+f.ago(2)) // 5 old published
		f.add(t, event("orders", "", "order.placed.v1"))
		f.publishAll(t) // 1 recent published
		f.park(t, event("orders", "p-1", "order.placed.v1"), "boom")
		skipped := event("orders", "p-2", "order.placed.v1")
		f.park(t, skipped, "boom")
		requireOK(t, f.cli(t, "parked", "skip", skipped.ID.String(), "--reason", "test"))
		f.add(t, event("orders", "k", "order.placed.v1"), event("orders", "k", "order.paid.v1")) // 2 pending
		f.exec(t, "UPDATE {t} SET created_at = "+f.ago(3)+", published_at = CASE WHEN published_at IS NULL THEN NULL ELSE "+f.ago(2)+" END WHERE parked_at IS NOT NULL OR published_at IS NULL")

		r := requireOK(t, f.cli(t, "purge", "--older-than", "1h", "--batch", "2"))
		require.Contains(t, r.stdout, "deleted 6 events of "+f.table+" published or skipped more than 1h0m0s ago")
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NOT NULL AND parked_at IS NULL"))
		require.Equal(t, int64(2), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NULL"))
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL"))
		require.Zero(t, f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NOT NULL AND parked_at IS NOT NULL"), "the skipped event")
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM outbox_audit WHERE table_name = $1 AND event_id = $2 AND action = 'skip'",
			f.table, skipped.ID.String()), "the skip's audit record stays")

		r = requireOK(t, f.cli(t, "purge", "--older-than", "1d"))
		require.Contains(t, r.stdout, "deleted 0 events")
	})
}
