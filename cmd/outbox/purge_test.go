package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// purge deletes old published events in chunks and leaves pending, parked
// and skipped events alone, however old.
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
		require.Contains(t, r.stdout, "deleted 5 events of "+f.table+" published more than 1h0m0s ago")
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NOT NULL AND parked_at IS NULL"))
		require.Equal(t, int64(2), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NULL"))
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NULL AND parked_at IS NOT NULL"))
		require.Equal(t, int64(1), f.scalar(t, "SELECT count(*) FROM {t} WHERE published_at IS NOT NULL AND parked_at IS NOT NULL"))

		r = requireOK(t, f.cli(t, "purge", "--older-than", "1d"))
		require.Contains(t, r.stdout, "deleted 0 events")
	})
}
