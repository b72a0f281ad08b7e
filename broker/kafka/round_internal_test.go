package kafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
)

// slowPlacement delays the client after it placed the record with value
// last, as a loaded machine can: on a topic's first metadata load, the
// client places the records waiting for it before it makes the topic's
// partitions visible, and this widens that gap.
type slowPlacement struct{ last string }

func (h slowPlacement) OnProduceRecordPartitioned(rec *kgo.Record, _ int32) {
	if string(rec.Value) == h.last {
		time.Sleep(time.Second)
	}
}

// A round that fails a record before anything is sent aborts the others,
// and an abort that comes while the client is placing the records of a
// topic it has just loaded misses them: the round must still end, and the
// call publish them in its next round.
func TestAbortWhilePlacing(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 1)
	p, err := New(Config{Brokers: brokers, MaxMessageBytes: 10_000})
	require.NoError(t, err)
	cl, err := kgo.NewClient(append(options(p.cfg, hooks{p}), kgo.WithHooks(slowPlacement{"c1"}))...)
	require.NoError(t, err)
	p.cl.Close()
	p.cl = cl

	msg := func(key, value string) *outbox.Message {
		return &outbox.Message{ID: uuid.New(), Topic: topic, Key: key, Value: []byte(value)}
	}
	// The large message fails in the client; the last one's placement is
	// slow.
	msgs := []*outbox.Message{msg("a", "a1"), msg("b", strings.Repeat("x", 20_000)), msg("c", "c1")}
	done := make(chan []error, 1)
	go func() { done <- p.Publish(context.Background(), msgs) }()
	var errs []error
	select {
	case errs = <-done:
		require.NoError(t, p.Close())
	case <-time.After(time.Minute):
		// Close would wait for the call.
		t.Fatal("Publish did not return within a minute: the round waits for records its abort missed")
	}
	require.Len(t, errs, len(msgs))
	require.NoError(t, errs[0])
	require.True(t, errors.Is(errs[1], outbox.ErrPermanent), "%v", errs[1])
	require.NoError(t, errs[2])
}
