package faulttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
)

func message(topic, key string) *outbox.Message {
	return &outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key, Value: []byte(`{}`)}
}

func ids(msgs []*outbox.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID.String()
	}
	return out
}

// A failed message holds back the later messages of its topic and key, which
// get ErrSkipped and are not sent; other keys, other topics and unkeyed
// messages go on.
func TestFlakySkipsAfterSameKeyFailure(t *testing.T) {
	t.Parallel()
	rec := faulttest.NewRecorder()
	f := faulttest.NewFlaky(rec, 0, 1)
	boom := errors.New("boom")
	a1, a2, b1, a3 := message("orders", "a"), message("orders", "a"), message("orders", "b"), message("orders", "a")
	otherTopic, u1, u2 := message("payments", "a"), message("orders", ""), message("orders", "")
	f.FailID(a1.ID, boom)
	f.FailID(u1.ID, boom)

	errs := f.Publish(context.Background(), []*outbox.Message{a1, a2, b1, a3, otherTopic, u1, u2})
	require.Len(t, errs, 7)
	require.ErrorIs(t, errs[0], boom)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)
	require.NoError(t, errs[2])
	require.ErrorIs(t, errs[3], outbox.ErrSkipped)
	require.NoError(t, errs[4], "another topic's key")
	require.ErrorIs(t, errs[5], boom)
	require.NoError(t, errs[6], "unkeyed messages hold nothing back")
	require.Equal(t, ids([]*outbox.Message{b1, otherTopic, u2}), ids(rec.Messages()), "failed and skipped messages are not sent")

	f.FailID(a1.ID, nil)
	require.Nil(t, f.Publish(context.Background(), []*outbox.Message{a1, a2}), "nil once every message went out")
}

// While down every message fails, a key's first with the outage's error and
// its later ones skipped; nothing is sent.
func TestFlakyDown(t *testing.T) {
	t.Parallel()
	rec := faulttest.NewRecorder()
	f := faulttest.NewFlaky(rec, 0, 1)
	down := errors.New("dial: connection refused")
	f.SetDown(down)
	errs := f.Publish(context.Background(), []*outbox.Message{message("t", "a"), message("t", "a"), message("t", "b")})
	require.ErrorIs(t, errs[0], down)
	require.ErrorIs(t, errs[1], outbox.ErrSkipped)
	require.ErrorIs(t, errs[2], down)
	require.Empty(t, rec.Messages())
	f.SetDown(nil)
	require.Nil(t, f.Publish(context.Background(), []*outbox.Message{message("t", "a")}))
	require.Len(t, rec.Messages(), 1)
}

// Failures at random: about the rate, the same for the same seed.
func TestFlakyRate(t *testing.T) {
	t.Parallel()
	pattern := func(seed uint64) []bool {
		f := faulttest.NewFlaky(faulttest.NewRecorder(), 0.3, seed)
		msgs := make([]*outbox.Message, 1000)
		for i := range msgs {
			msgs[i] = message("t", "")
		}
		failed := make([]bool, len(msgs))
		for i, err := range f.Publish(context.Background(), msgs) {
			if err != nil {
				require.ErrorIs(t, err, faulttest.ErrInjected)
				failed[i] = true
			}
		}
		return failed
	}
	first := pattern(7)
	n := 0
	for _, failed := range first {
		if failed {
			n++
		}
	}
	require.InDelta(t, 300, n, 60)
	require.Equal(t, first, pattern(7), "deterministic for a seed")
	require.NotEqual(t, first, pattern(8))
}

// A blocked publish waits for unblock; one whose context ends sends nothing.
func TestFlakyBlock(t *testing.T) {
	t.Parallel()
	rec := faulttest.NewRecorder()
	f := faulttest.NewFlaky(rec, 0, 1)
	unblock := f.Block()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := f.Publish(ctx, []*outbox.Message{message("t", "a"), message("t", "b")})
	require.Len(t, errs, 2)
	for _, err := range errs {
		require.ErrorIs(t, err, context.Canceled)
	}
	require.Empty(t, rec.Messages())

	done := make(chan []error)
	go func() { done <- f.Publish(context.Background(), []*outbox.Message{message("t", "a")}) }()
	select {
	case <-done:
		t.Fatal("a blocked publish returned before unblock")
	case <-time.After(50 * time.Millisecond):
	}
	unblock()
	require.Nil(t, <-done)
	require.Len(t, rec.Messages(), 1)
}

// A Flaky that fails every message at random still hands a reclaimed one
// to its publisher, which may have to look it up.
func TestFlakyPassesReclaimed(t *testing.T) {
	rec := faulttest.NewRecorder()
	f := faulttest.NewFlaky(rec, 1, 1)
	msgs := []*outbox.Message{
		{ID: uuid.New(), Topic: "t", Key: "a", Reclaimed: true},
		{ID: uuid.New(), Topic: "t", Key: "b"},
	}
	errs := f.Publish(context.Background(), msgs)
	if len(errs) != 2 || errs[0] != nil || errs[1] == nil {
		t.Fatalf("errs = %v, want the reclaimed one passed and the other failed", errs)
	}
	if got := rec.Messages(); len(got) != 1 || got[0].ID != msgs[0].ID {
		t.Fatalf("published %v, want the reclaimed message", got)
	}
}
