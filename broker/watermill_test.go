package broker_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/internal/faulttest"
)

func msg(key string, n int) *outbox.Message {
	id := outbox.NewID()
	return &outbox.Message{
		ID: id, Topic: "orders", Key: key, Value: fmt.Appendf(nil, `{"n":%d}`, n),
		Headers: map[string]string{outbox.HeaderMessageUUID: id.String(), outbox.HeaderCorrelationID: "c-1"},
	}
}

// Once a message fails, the later messages of its key are not sent and are
// reported skipped; other keys go on. Messages keep their ID as the Watermill
// UUID, and their headers (but the UUID header) as metadata.
func TestWatermillPerKeySkip(t *testing.T) {
	t.Parallel()
	rec := faulttest.NewRecorder(0, 1)
	a1, a2, b1, a3 := msg("a", 1), msg("a", 2), msg("b", 1), msg("a", 3)
	rec.FailID(a2.ID, errors.New("boom"))
	errs := broker.NewWatermill(rec).Publish(context.Background(), []*outbox.Message{a1, a2, b1, a3})
	require.Len(t, errs, 4)
	require.NoError(t, errs[0])
	require.ErrorContains(t, errs[1], "boom")
	require.NoError(t, errs[2])
	require.ErrorIs(t, errs[3], outbox.ErrSkipped)

	got := rec.Messages()
	require.Len(t, got, 2)
	require.Equal(t, a1.ID.String(), got[0].UUID)
	require.Equal(t, b1.ID.String(), got[1].UUID)
	require.Equal(t, "c-1", got[0].Metadata.Get(outbox.HeaderCorrelationID))
	require.Empty(t, got[0].Metadata.Get(outbox.HeaderMessageUUID), "Watermill marshalers add it from the UUID")
	require.Equal(t, `{"n":1}`, string(got[0].Payload))
}

// A refused connection is classified as unreachable; a custom classifier
// can mark other errors permanent. All accepted → nil.
func TestWatermillClassification(t *testing.T) {
	t.Parallel()
	rec := faulttest.NewRecorder(0, 1)
	rec.SetDown(fmt.Errorf("dial tcp 127.0.0.1:1: %w", syscall.ECONNREFUSED))
	errs := broker.NewWatermill(rec).Publish(context.Background(), []*outbox.Message{msg("a", 1)})
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)

	rec.SetDown(errors.New("schema rejected"))
	permanent := broker.WithClassifier(func(err error) error { return fmt.Errorf("%w: %w", outbox.ErrPermanent, err) })
	errs = broker.NewWatermill(rec, permanent).Publish(context.Background(), []*outbox.Message{msg("a", 1)})
	require.ErrorIs(t, errs[0], outbox.ErrPermanent)

	rec.SetDown(nil)
	require.Nil(t, broker.NewWatermill(rec).Publish(context.Background(), []*outbox.Message{msg("a", 1), msg("b", 1)}))
}
