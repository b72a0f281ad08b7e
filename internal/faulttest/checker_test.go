package faulttest_test

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
)

func event(key string) outbox.Event {
	return outbox.Event{ID: outbox.NewID(), Topic: "orders", Key: key, AggregateID: "agg-" + key}
}

func received(events ...outbox.Event) []faulttest.Received {
	out := make([]faulttest.Received, len(events))
	for i, e := range events {
		out[i] = faulttest.Received{ID: e.ID, Key: e.Key}
	}
	return out
}

// The checker reports each way a delivery can break a promise, and only
// that one.
func TestCheckerReports(t *testing.T) {
	t.Parallel()
	a1, a2, a3, b1 := event("a"), event("a"), event("a"), event("b")
	phantom, stranger := event("a"), event("c")
	unkeyed := event("")
	unkeyed.AggregateID = "order-9"

	for _, tc := range []struct {
		name     string
		received []faulttest.Received
		counted  int64
		want     faulttest.Report // Committed, Received and Counted are filled in
		ok       bool
	}{
		{name: "all in order", received: received(a1, b1, a2, a3), ok: true},
		{
			name:     "keys interleaved otherwise",
			received: received(a1, a2, b1, a3),
			ok:       true,
		},
		{
			name:     "lost",
			received: received(a1, a3, b1),
			want:     faulttest.Report{Lost: []uuid.UUID{a2.ID}},
		},
		{
			name:     "phantom from a rolled-back transaction",
			received: received(a1, a2, phantom, a3, b1),
			want:     faulttest.Report{Unexpected: []uuid.UUID{phantom.ID}},
		},
		{
			name:     "never written",
			received: received(a1, a2, a3, b1, stranger),
			want:     faulttest.Report{Unexpected: []uuid.UUID{stranger.ID}},
		},
		{
			name:     "duplicate counted",
			received: received(a1, a2, a2, a3, b1),
			counted:  1,
			want:     faulttest.Report{Duplicates: 1},
			ok:       true,
		},
		{
			name:     "duplicates beyond the counted ones",
			received: received(a1, a2, a2, a3, b1, b1),
			counted:  1,
			want:     faulttest.Report{Duplicates: 2},
		},
		{
			// A redelivery of an earlier event after later ones is a
			// duplicate, not an inversion.
			name:     "late redelivery",
			received: received(a1, a2, a3, a1, b1),
			counted:  1,
			want:     faulttest.Report{Duplicates: 1},
			ok:       true,
		},
		{
			name:     "reordered",
			received: received(a2, a1, a3, b1),
			want:     faulttest.Report{Inversions: []string{`key "a": event #0 arrived after #1`}},
		},
		{
			name:     "reordered by two",
			received: received(a1, a3, a2, b1),
			want:     faulttest.Report{Inversions: []string{`key "a": event #1 arrived after #2`}},
		},
		{
			name:     "wrong key",
			received: append(received(a1, a2, a3), faulttest.Received{ID: b1.ID, Key: "a"}),
			want:     faulttest.Report{Inversions: []string{fmt.Sprintf(`event %s written with key "b" arrived with key "a"`, b1.ID)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := faulttest.NewChecker()
			c.Committed(a1, a2)
			c.RolledBack(phantom)
			c.Committed(b1, a3)
			got := c.Check(tc.received, tc.counted)
			want := tc.want
			want.Committed, want.Received, want.Counted = 4, len(tc.received), tc.counted
			require.Equal(t, want, got)
			require.Equal(t, tc.ok, got.OK(), got.String())
			require.Equal(t, len(tc.want.Lost), c.Missing(tc.received))
		})
	}

	t.Run("unkeyed events are ordered by aggregate", func(t *testing.T) {
		t.Parallel()
		c := faulttest.NewChecker()
		later := unkeyed
		later.ID = outbox.NewID()
		c.Committed(unkeyed, later)
		got := c.Check([]faulttest.Received{{ID: later.ID, Key: "order-9"}, {ID: unkeyed.ID, Key: "order-9"}}, 0)
		require.Equal(t, []string{`key "order-9": event #0 arrived after #1`}, got.Inversions)
	})
}

// The report names what broke, first the counts, then the inversions.
func TestReportString(t *testing.T) {
	t.Parallel()
	r := faulttest.Report{Committed: 3, Received: 4, Lost: []uuid.UUID{uuid.New()}, Duplicates: 2, Counted: 1,
		Inversions: []string{"key \"a\": event #0 arrived after #1"}}
	require.Equal(t, "committed 3, received 4, lost 1, unexpected 0, duplicates 2 (counted 1), inversions 1\n"+
		"  key \"a\": event #0 arrived after #1", r.String())
	require.False(t, r.OK())
}
