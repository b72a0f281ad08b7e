package outboxwatermill_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/postgres"
)

// newKafka starts a development broker and a Kafka publisher for the relay.
func newKafka(t testing.TB) (*devkafka.Broker, *kafka.Publisher) {
	t.Helper()
	dev, err := devkafka.New(devkafka.Config{})
	require.NoError(t, err)
	t.Cleanup(dev.Close)
	pub, err := kafka.New(kafka.Config{Brokers: []string{dev.Addr()}})
	require.NoError(t, err)
	t.Cleanup(func() { pub.Close() })
	return dev, pub
}

// A message published through the transactional publisher reaches a
// Watermill Kafka subscriber with its UUID, metadata and payload unchanged,
// through the table, the relay, broker/kafka and Kafka; the key is the
// partition_key metadata.
func TestMessageReachesKafkaUnchanged(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	dev, pub := newKafka(t)
	runRelay(t, st, pub)
	topic := testenv.Table("orders")

	// Unusual but valid JSON: spacing, key order and escapes must survive.
	payload := []byte("{ \"z\": 1,\n  \"a\": [true, null, \"\\u00e9\\n\"], \"n\": 1.50 }")
	sent := message.NewMessage(watermill.NewUUID(), payload)
	sent.Metadata = message.Metadata{
		outbox.HeaderCorrelationID:           "corr-42",
		outboxwatermill.MetadataPartitionKey: "order-42",
		outbox.HeaderEventType:               "order.placed.v1",
		outbox.HeaderAggregateType:           "order",
		outbox.HeaderAggregateID:             "order-42",
		"tenant":                             "acme",
		"empty":                              "",
	}
	ctx := context.Background()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, outboxwatermill.NewPublisher(st, tx).Publish(topic, sent))
	require.NoError(t, tx.Commit(ctx))

	sub := kafkaSubscriber(t, dev.Addr(), "", wkafka.DefaultMarshaler{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	got := receive(t, msgs, 1, 20*time.Second)[0]

	require.Equal(t, sent.UUID, got.UUID)
	require.Equal(t, string(payload), string(got.Payload))
	for k, v := range sent.Metadata {
		require.Equal(t, v, got.Metadata.Get(k), "metadata %s", k)
		_, present := got.Metadata[k]
		require.True(t, present, "metadata %s", k)
	}
	key, ok := wkafka.MessageKeyFromCtx(got.Context())
	require.True(t, ok)
	require.Equal(t, "order-42", string(key))
}
