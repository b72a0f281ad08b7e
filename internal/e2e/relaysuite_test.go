package e2e_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/contrib/watermill/wmkafka"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
)

// kafkaTarget returns a topic of its own on the real broker and a reader of
// it; the caller sets the publisher.
func kafkaTarget(t *testing.T, brokers []string) relaytest.Broker {
	t.Helper()
	topic := testenv.KafkaTopic(t, brokers, 4)
	return relaytest.Broker{Topic: topic, Received: testenv.ConsumeKafka(t, brokers, topic).Received}
}

// The relay suite over broker/kafka and Apache Kafka. Not parallel: the
// suite's Shutdown subtest checks for leaked goroutines.
func TestRelaySuiteKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	relaytest.RunBroker(t, testenv.PostgresHarness, func(t *testing.T) relaytest.Broker {
		b := kafkaTarget(t, brokers)
		pub, err := kafka.New(kafka.Config{Brokers: brokers})
		require.NoError(t, err)
		t.Cleanup(func() { pub.Close() })
		b.Publisher = pub
		return b
	})
}

// The relay suite over broker/kafka in transactional mode, read back by a
// read_committed consumer.
func TestRelaySuiteKafkaTransactional(t *testing.T) {
	brokers := testenv.Kafka(t)
	relaytest.RunBroker(t, testenv.PostgresHarness, func(t *testing.T) relaytest.Broker {
		topic := testenv.KafkaTopic(t, brokers, 4)
		pub, err := kafka.New(transactional(kafka.Config{Brokers: brokers}, testenv.Table("relay"), progressTopic(t, brokers)))
		require.NoError(t, err)
		t.Cleanup(func() { pub.Close() })
		return relaytest.Broker{Publisher: pub, Topic: topic, Received: testenv.ConsumeKafkaCommitted(t, brokers, topic).Received}
	})
}

// The relay suite over the Watermill-Kafka path (wmbroker.New over a
// watermill-kafka publisher) and Apache Kafka.
func TestRelaySuiteWatermillKafka(t *testing.T) {
	brokers := testenv.Kafka(t)
	relaytest.RunBroker(t, testenv.PostgresHarness, func(t *testing.T) relaytest.Broker {
		b := kafkaTarget(t, brokers)
		pub, kp, err := wmkafka.NewPublisher(brokers)
		require.NoError(t, err)
		t.Cleanup(func() { kp.Close() })
		b.Publisher = pub
		return b
	})
}
