package wmbroker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
	"github.com/outboxkit/outbox/internal/faulttest"
)

// recorder is a Watermill publisher that keeps what it accepts and fails
// on demand: chosen messages, or every one while it is down.
type recorder struct {
	mu   sync.Mutex
	log  []*message.Message
	fail map[string]error
	down error
}

func newRecorder() *recorder { return &recorder{fail: map[string]error{}} }

func (r *recorder) FailID(id uuid.UUID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[id.String()] = err
}

func (r *recorder) SetDown(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = err
}

func (r *recorder) Publish(_ string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down != nil {
		return r.down
	}
	for _, m := range msgs {
		if err := r.fail[m.UUID]; err != nil {
			return err
		}
	}
	r.log = append(r.log, msgs...)
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) Messages() []*message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

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
	rec := newRecorder()
	a1, a2, b1, a3 := msg("a", 1), msg("a", 2), msg("b", 1), msg("a", 3)
	rec.FailID(a2.ID, errors.New("boom"))
	errs := wmbroker.New(rec).Publish(context.Background(), []*outbox.Message{a1, a2, b1, a3})
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
	rec := newRecorder()
	rec.SetDown(fmt.Errorf("dial tcp 127.0.0.1:1: %w", syscall.ECONNREFUSED))
	errs := wmbroker.New(rec).Publish(context.Background(), []*outbox.Message{msg("a", 1)})
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)

	rec.SetDown(errors.New("schema rejected"))
	permanent := wmbroker.WithClassifier(func(err error) error { return fmt.Errorf("%w: %w", outbox.ErrPermanent, err) })
	errs = wmbroker.New(rec, permanent).Publish(context.Background(), []*outbox.Message{msg("a", 1)})
	require.ErrorIs(t, errs[0], outbox.ErrPermanent)

	rec.SetDown(nil)
	faulttest.RequireAccepted(t, wmbroker.New(rec).Publish(context.Background(), []*outbox.Message{msg("a", 1), msg("b", 1)}))
}

// The default classifier is conservative: a Watermill publisher does not
// say whether a failed message reached the broker. A refused connection was
// not sent; a reset one or any other error may have been appended.
func TestWatermillUnknownOutcome(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err                  error
		unreachable, unknown bool
	}{
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true, false},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true, true},
		{errors.New("kafka: client has run out of available brokers"), false, true},
		{fmt.Errorf("%w: too large", outbox.ErrPermanent), false, false},
		{fmt.Errorf("%w: down", outbox.ErrUnreachable), true, false},
	} {
		rec := newRecorder()
		rec.SetDown(tc.err)
		errs := wmbroker.New(rec).Publish(context.Background(), []*outbox.Message{msg("a", 1)})
		require.Equal(t, tc.unreachable, errors.Is(errs[0], outbox.ErrUnreachable), "%v", tc.err)
		require.Equal(t, tc.unknown, errors.Is(errs[0], outbox.ErrUnknownOutcome), "%v", tc.err)
		require.ErrorIs(t, errs[0], tc.err)
	}
}

// Once the broker proved unreachable, the rest of the call is not sent, so
// that an outage is reported after one publish, not one per message.
func TestWatermillStopsWhenUnreachable(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.SetDown(fmt.Errorf("dial: %w", syscall.ECONNREFUSED))
	pub := &counting{Publisher: rec}
	errs := wmbroker.New(pub).Publish(context.Background(), []*outbox.Message{msg("a", 1), msg("b", 1), msg("a", 2)})
	require.ErrorIs(t, errs[0], outbox.ErrUnreachable)
	require.ErrorIs(t, errs[1], outbox.ErrUnreachable)
	require.ErrorIs(t, errs[2], outbox.ErrSkipped)
	require.Equal(t, 1, pub.calls, "one publish reached the publisher")
}

type counting struct {
	message.Publisher
	calls int
}

func (c *counting) Publish(topic string, msgs ...*message.Message) error {
	c.calls++
	return c.Publisher.Publish(topic, msgs...)
}

// The event key travels as the partition_key metadata, which Watermill's
// partitioning marshalers read; an event without a key has none.
func TestToMessageCarriesTheKey(t *testing.T) {
	t.Parallel()
	wm := wmbroker.ToMessage(context.Background(), msg("order-42", 1))
	require.Equal(t, "order-42", wm.Metadata.Get(wmbroker.MetadataPartitionKey))
	unkeyed := msg("", 2)
	_, ok := wmbroker.ToMessage(context.Background(), unkeyed).Metadata[wmbroker.MetadataPartitionKey]
	require.False(t, ok)
}
