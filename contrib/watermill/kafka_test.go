package outboxwatermill_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/wmbroker"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/contrib/watermill/wmkafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/postgres"
)

// newKafka returns the real broker's addresses and a Kafka publisher for the
// relay.
func newKafka(t testing.TB) ([]string, *kafka.Publisher) {
	t.Helper()
	brokers := testenv.Kafka(t)
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { pub.Close() })
	return brokers, pub
}

// A message published through the transactional publisher reaches a
// Watermill Kafka subscriber with its UUID, metadata and payload unchanged,
// through the table, the relay, broker/kafka and Kafka; the key is the
// partition_key metadata.
func TestMessageReachesKafkaUnchanged(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	brokers, pub := newKafka(t)
	runRelay(t, st, pub)
	topic := testenv.KafkaTopic(t, brokers, 3)

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

	sub := kafkaSubscriber(t, brokers, "", wkafka.DefaultMarshaler{})
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

func outboxMessage(topic, key, value string) *outbox.Message {
	id := uuid.New()
	return &outbox.Message{
		ID: id, Topic: topic, Key: key, Value: []byte(value),
		Headers: map[string]string{
			outbox.HeaderMessageUUID:   id.String(),
			outbox.HeaderCorrelationID: "corr-" + value,
			outbox.HeaderTraceparent:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		},
	}
}

// broker/kafka's records are ordinary Watermill messages to a Watermill
// Kafka subscriber: UUID, payload and metadata, each key in one partition,
// in order.
func TestSubscriberReadsKafkaPublisher(t *testing.T) {
	t.Parallel()
	brokers, p := newKafka(t)
	topic := testenv.KafkaTopic(t, brokers, 3)
	var msgs []*outbox.Message
	for i := range 5 {
		for _, key := range []string{"a", "b", "c", "d"} {
			msgs = append(msgs, outboxMessage(topic, key, fmt.Sprintf("%s%d", key, i)))
		}
	}
	msgs = append(msgs, outboxMessage(topic, "", "unkeyed"))
	faulttest.RequireAccepted(t, p.Publish(t.Context(), msgs))

	sub := kafkaSubscriber(t, brokers, "test", wkafka.DefaultMarshaler{})
	defer sub.Close()
	ch, err := sub.Subscribe(t.Context(), topic)
	require.NoError(t, err)

	byID := map[string]*outbox.Message{}
	for _, m := range msgs {
		byID[m.ID.String()] = m
	}
	partitionOf := map[string]int32{}
	order := map[string][]string{}
	for _, got := range receive(t, ch, len(msgs), 30*time.Second) {
		want, ok := byID[got.UUID]
		require.True(t, ok, "UUID %q is an event ID", got.UUID)
		require.Equal(t, want.Value, []byte(got.Payload))
		require.Equal(t, want.Headers[outbox.HeaderCorrelationID], got.Metadata.Get(outbox.HeaderCorrelationID))
		require.Equal(t, want.Headers[outbox.HeaderTraceparent], got.Metadata.Get(outbox.HeaderTraceparent))
		require.Empty(t, got.Metadata.Get(outbox.HeaderMessageUUID), "the UUID header is not metadata")
		if want.Key == "" {
			continue
		}
		partition, ok := wkafka.MessagePartitionFromCtx(got.Context())
		require.True(t, ok)
		if seen, ok := partitionOf[want.Key]; ok {
			require.Equal(t, seen, partition, "key %s in one partition", want.Key)
		}
		partitionOf[want.Key] = partition
		order[want.Key] = append(order[want.Key], string(want.Value))
	}
	for _, key := range []string{"a", "b", "c", "d"} {
		require.Equal(t, []string{key + "0", key + "1", key + "2", key + "3", key + "4"}, order[key])
	}
}

// broker/kafka places keys where sarama's hash partitioner does, over a few
// thousand keys, and so does the Watermill-Kafka path with wmkafka.Marshaler:
// Watermill and sarama producers and consumers, and the data already on a
// topic, keep their partitions. This test lives here because it needs sarama,
// which broker/kafka does not import.
func TestKeyPlacementMatchesSarama(t *testing.T) {
	t.Parallel()
	const keys, partitions = 3000, 7
	brokers, p := newKafka(t)
	direct := testenv.KafkaTopic(t, brokers, partitions)
	viaWatermill := testenv.KafkaTopic(t, brokers, partitions)

	var msgs []*outbox.Message
	for i := range keys {
		msgs = append(msgs, outboxMessage(direct, fmt.Sprintf("order-%d", i), fmt.Sprint(i)))
	}
	faulttest.RequireAccepted(t, p.Publish(t.Context(), msgs))
	wp, kp, err := wmkafka.NewPublisher(brokers)
	require.NoError(t, err)
	defer kp.Close()
	for _, m := range msgs {
		m.Topic = viaWatermill
	}
	faulttest.RequireAccepted(t, wp.Publish(t.Context(), msgs))

	hash := sarama.NewHashPartitioner(direct)
	for _, topic := range []string{direct, viaWatermill} {
		recs := testenv.ReadKafka(t, brokers, topic)
		require.Len(t, recs, keys)
		for _, r := range recs {
			want, err := hash.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(r.Key)}, partitions)
			require.NoError(t, err)
			require.Equal(t, want, r.Partition, "key %s on %s", r.Key, topic)
		}
	}
}

// The relay publishes through the Watermill-Kafka path with per-key order:
// the event key reaches watermill-kafka as partition_key metadata, and
// wmkafka.Marshaler makes it the Kafka key.
func TestKafkaPathPerKeyOrder(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 6)
	wp, kp, err := wmkafka.NewPublisher(brokers)
	require.NoError(t, err)
	defer kp.Close()
	tc := testenv.ConsumeKafka(t, brokers, topic)
	check := faulttest.NewChecker()
	r := runRelay(t, st, wp)
	ctx := context.Background()
	for i := range 10 {
		var events []outbox.Event
		for k := range 30 {
			e := relaytest.Event(fmt.Sprint("key-", k), i)
			e.Topic = topic
			events = append(events, e)
		}
		tx, err := st.Pool().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, st.AddTx(ctx, tx, events...))
		require.NoError(t, tx.Commit(ctx))
		check.Committed(events...)
	}
	tc.WaitAll(t, check, time.Minute)
	report := check.Check(tc.Received(), r.Stats().PossibleDuplicates)
	t.Log(report)
	require.True(t, report.OK(), report.String())
}

// TestWmkafkaSaramaConfig pins the knobs the relay's promises rest on.
func TestWmkafkaSaramaConfig(t *testing.T) {
	t.Parallel()
	c := wmkafka.SaramaConfig()
	require.NoError(t, c.Validate())
	require.True(t, c.Producer.Idempotent)
	require.Equal(t, sarama.WaitForAll, c.Producer.RequiredAcks)
	require.Equal(t, 1, c.Net.MaxOpenRequests)
	require.Equal(t, 3*time.Second, c.Net.DialTimeout)
	require.Equal(t, 3*time.Second, c.Net.ReadTimeout)
	require.Equal(t, 3*time.Second, c.Net.WriteTimeout)
	require.Equal(t, 2*time.Second, c.Producer.Timeout)
	require.Equal(t, 1, c.Producer.Retry.Max)
	require.Equal(t, sarama.CompressionNone, c.Producer.Compression)
	require.True(t, c.Producer.Return.Successes)
	p := c.Producer.Partitioner("t")
	require.True(t, p.RequiresConsistency())
	want, err := sarama.NewHashPartitioner("t").Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("key")}, 12)
	require.NoError(t, err)
	got, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder("key")}, 12)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// wmkafka.Marshaler keys a message by its partition_key metadata, and leaves a
// message without one unkeyed, as broker/kafka does.
func TestWmkafkaMarshalerKey(t *testing.T) {
	t.Parallel()
	wm := wmbroker.ToMessage(context.Background(), outboxMessage("t", "order-42", "{}"))
	pm, err := wmkafka.Marshaler{}.Marshal("t", wm)
	require.NoError(t, err)
	require.Equal(t, sarama.StringEncoder("order-42"), pm.Key)
	pm, err = wmkafka.Marshaler{}.Marshal("t", wmbroker.ToMessage(context.Background(), outboxMessage("t", "", "{}")))
	require.NoError(t, err)
	require.Nil(t, pm.Key)
}

func TestWmkafkaClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err                             error
		permanent, unreachable, unknown bool
	}{
		{sarama.ErrMessageSizeTooLarge, true, false, false},
		{sarama.ErrInvalidTopic, true, false, false},
		{sarama.ErrOutOfBrokers, false, true, true},
		{sarama.ErrNotEnoughReplicas, false, true, true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false, true, true},
		{errors.New("something else"), false, false, true},
	} {
		got := wmkafka.Classify(fmt.Errorf("cannot produce message: %w", tc.err))
		require.ErrorIs(t, got, tc.err)
		require.Equal(t, tc.permanent, errors.Is(got, outbox.ErrPermanent), "%v permanent", tc.err)
		require.Equal(t, tc.unreachable, errors.Is(got, outbox.ErrUnreachable), "%v unreachable", tc.err)
		require.Equal(t, tc.unknown, errors.Is(got, outbox.ErrUnknownOutcome), "%v unknown", tc.err)
	}
}
