package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	dialects(t, func(t *testing.T, f *fixture) {
		f.add(t, event("payments", "p-1", "payment.captured.v1"), event("payments", "p-2", "payment.captured.v1"))
		f.publishAll(t)
		f.park(t, event("orders", "o-1", "order.placed.v1"), "kafka: message too large")
		f.add(t, event("orders", "o-1", "order.paid.v1"), event("orders", "o-2", "order.placed.v1"))

		r := requireOK(t, f.cli(t, "status", "--json"))
		var out statusJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), r.stdout)
		require.Equal(t, f.table, out.Table)
		require.Equal(t, f.dialect, out.Dialect)
		require.Len(t, out.Topics, 2)
		orders, payments := out.Topics[0], out.Topics[1]
		require.Equal(t, "orders", orders.Topic)
		require.Equal(t, int64(2), orders.Pending)
		require.Equal(t, int64(1), orders.Parked)
		require.Greater(t, orders.OldestPendingAge, 0.0)
		require.Equal(t, map[string]int64{"1m": 0, "5m": 0, "15m": 0}, orders.Published)
		require.Equal(t, "payments", payments.Topic)
		require.Zero(t, payments.Pending)
		require.Equal(t, map[string]int64{"1m": 2, "5m": 2, "15m": 2}, payments.Published)
		require.InDelta(t, 2.0/60, payments.RatePerSecond["1m"], 1e-9)
		require.Equal(t, int64(2), out.Total.Pending)
		require.Equal(t, int64(1), out.Total.Parked)
		require.Equal(t, int64(2), out.Total.Published["1m"])

		r = requireOK(t, f.cli(t, "status"))
		require.Regexp(t, `TOPIC +PENDING +OLDEST +PARKED +PUBLISHED/MIN 1m +5m +15m`, r.stdout)
		require.Regexp(t, `orders +2 +\d+(\.\d)?m?s +1 +0\.0 +0\.0 +0\.0`, r.stdout)
		require.Regexp(t, `payments +0 +- +0 +2\.0 +0\.4 +0\.1`, r.stdout)
		require.Regexp(t, `TOTAL +2 +.* +1 +2\.0`, r.stdout)
		require.Contains(t, r.stdout, "1 parked: they block the later events of their keys")
		t.Logf("outbox status:\n%s", r.stdout)
	})
}
