package kafka

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

// The size the publisher computes for a record batch is its size on the
// wire, the size the broker compares with message.max.bytes: past 64 records
// the offset deltas take two bytes, and keys, values and headers of any
// length count exactly.
func TestBatchSizeExact(t *testing.T) {
	t.Parallel()
	b, err := devkafka.New(devkafka.Config{Partitions: 1})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	var mu sync.Mutex
	var sizes []int
	b.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: []int32{0}, Count: -1, Observe: true,
		When: func(req kmsg.Request) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, tp := range req.(*kmsg.ProduceRequest).Topics {
				for _, pp := range tp.Partitions {
					sizes = append(sizes, len(pp.Records))
				}
			}
			return true
		}})
	p, err := New(Config{Brokers: []string{b.Addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })

	var msgs []*outbox.Message
	for i := range 200 {
		id := uuid.New()
		key := strings.Repeat("k", i%3) // unkeyed too
		msgs = append(msgs, &outbox.Message{ID: id, Topic: "size", Key: key,
			Value: []byte(strings.Repeat("v", i*7)),
			Headers: map[string]string{outbox.HeaderMessageUUID: id.String(), "h": strings.Repeat("x", i),
				fmt.Sprint("n", i): "y"}})
	}
	require.Nil(t, p.Publish(context.Background(), msgs))

	c := newCall(p, context.Background(), msgs)
	c.prepare()
	want := recordBatchOverhead
	for i := range msgs {
		want += recordSize(c.recs[i], i)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{want}, sizes)
}

// newRecord writes what watermill-kafka's DefaultMarshaler writes for the
// message broker.ToWatermill makes of m.
func TestRecordIsDefaultMarshalerFormat(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	for _, key := range []string{"order-42", ""} {
		m := &outbox.Message{ID: id, Topic: "t", Key: key, Value: []byte(`{"a":1}`), Headers: map[string]string{
			outbox.HeaderMessageUUID:   id.String(),
			outbox.HeaderCorrelationID: "corr",
			outbox.HeaderEventType:     "x.happened",
			"empty":                    "",
		}}
		want, err := wmkafka.DefaultMarshaler{}.Marshal(m.Topic, broker.ToWatermill(context.Background(), m))
		require.NoError(t, err)
		got := newRecord(m)

		require.Equal(t, m.Value, got.Value)
		if key == "" {
			require.Nil(t, got.Key)
		} else {
			require.Equal(t, []byte(key), got.Key)
		}
		require.Len(t, got.Headers, len(want.Headers))
		require.Equal(t, want.Headers[0], *got.Headers[0], "the UUID header first")
		headers := func(hs []sarama.RecordHeader) map[string][]byte {
			out := map[string][]byte{}
			for _, h := range hs {
				require.NotNil(t, h.Value, "an empty value is not null")
				out[string(h.Key)] = h.Value
			}
			return out
		}
		gotHeaders := make([]sarama.RecordHeader, len(got.Headers))
		for i, h := range got.Headers {
			gotHeaders[i] = *h
		}
		require.Equal(t, headers(want.Headers), headers(gotHeaders))
	}
}
