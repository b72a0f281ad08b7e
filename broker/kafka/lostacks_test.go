package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
)

// The tests in this file run on devkafka: they drop produce responses after
// the records were appended (lost acks), a fault a real broker cannot be
// made to inject.

func startDevKafka(t *testing.T) *devkafka.Broker {
	t.Helper()
	b, err := devkafka.New(devkafka.Config{Partitions: 3})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func readDev(t *testing.T, b *devkafka.Broker, topic string) []*kgo.Record {
	t.Helper()
	return testenv.ReadKafka(t, []string{b.Addr()}, topic)
}

// Lost acks make the client resend a batch with its sequence numbers; the
// broker keeps one copy.
func TestLostAcksNoDuplicates(t *testing.T) {
	t.Parallel()
	b := startDevKafka(t)
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	faulttest.RequireAccepted(t, publish(t, p, message("acks", "warm", "warm")))

	var msgs []*outbox.Message
	for i := range 30 {
		msgs = append(msgs, message("acks", fmt.Sprint(i%5), fmt.Sprint(i)))
	}
	const window = 2 * time.Second
	b.DropProduceResponses(window)
	began := time.Now()
	errs := publish(t, p, msgs...)
	require.GreaterOrEqual(t, time.Since(began), window, "the first acks were lost")
	require.Nil(t, errs, "the resend after the window was acknowledged")

	seen := map[string]int{}
	for _, r := range readDev(t, b, "acks") {
		seen[string(r.Headers[0].Value)]++
	}
	for _, m := range msgs {
		require.Equal(t, 1, seen[m.ID.String()], "one copy of %s", m.Value)
	}
}

// When ctx ends while a request is out, Publish returns at once with
// unknown outcomes; the client moves to a new epoch, and the next call
// publishes after the records whose ack was lost.
func TestContextEndsInFlight(t *testing.T) {
	t.Parallel()
	b := startDevKafka(t)
	p := newPublisher(t, kafka.Config{Brokers: []string{b.Addr()}})
	const topic = "inflight"
	faulttest.RequireAccepted(t, publish(t, p, message(topic, "a", "a0")))

	b.DropProduceResponses(time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	errs := p.Publish(ctx, []*outbox.Message{message(topic, "a", "a1"), message(topic, "a", "a2")})
	require.Less(t, time.Since(began), 200*time.Millisecond+time.Second, "returned when ctx ended")
	require.Len(t, errs, 2)
	for _, err := range errs {
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, outbox.ErrUnknownOutcome)
		require.NotErrorIs(t, err, outbox.ErrSkipped)
		require.NotErrorIs(t, err, outbox.ErrPermanent)
	}

	// The records were appended; their ack was dropped.
	for publish(t, p, message(topic, "a", "a3")) != nil {
		// the broker answers again once the window is over
	}
	require.Equal(t, []string{"a0", "a1", "a2", "a3"}, values(readDev(t, b, topic))[:4])
}
