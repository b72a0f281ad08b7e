package outboxwatermill

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
)

// NewKafkaPublisher returns a publisher for the relay that publishes through
// a watermill-kafka publisher to brokers, built with
// [SaramaProducerConfig] and [KafkaMarshaler], its errors classified by
// [ClassifyKafkaError]. Close the watermill-kafka publisher when done.
// broker/kafka publishes to Kafka faster (a batch per request); this path is
// for services that keep their producer in Watermill.
func NewKafkaPublisher(brokers []string) (*wmbroker.Publisher, *wmkafka.Publisher, error) {
	kp, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers:               brokers,
		Marshaler:             KafkaMarshaler{},
		OverwriteSaramaConfig: SaramaProducerConfig(),
	}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("outboxwatermill: kafka publisher: %w", err)
	}
	return wmbroker.New(kp, wmbroker.WithClassifier(ClassifyKafkaError)), kp, nil
}

// SaramaProducerConfig returns the sarama configuration of a watermill-kafka
// publisher that the relay publishes through: an idempotent producer with
// acks from all in-sync replicas and one request in flight per connection,
// so that a resend after a lost ack is dropped by the broker instead of
// duplicated and never overtakes an earlier message; sarama's hash
// partitioner on the key, the one broker/kafka reproduces; no compression;
// bounded timeouts (3 s per network step) and one retry. watermill-kafka's
// own default (acks from the leader only, not idempotent) duplicates a
// message whose ack is lost.
func SaramaProducerConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "outbox"
	c.Version = sarama.V2_8_0_0 // idempotent produce needs 0.11 or later
	c.Net.MaxOpenRequests = 1
	c.Net.DialTimeout = 3 * time.Second
	c.Net.ReadTimeout = 3 * time.Second
	c.Net.WriteTimeout = 3 * time.Second
	c.Metadata.Retry.Max = 1
	c.Metadata.Retry.Backoff = 250 * time.Millisecond
	c.Metadata.Timeout = 3 * time.Second
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Timeout = 2 * time.Second
	c.Producer.Retry.Max = 1
	c.Producer.Retry.Backoff = 250 * time.Millisecond
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.Compression = sarama.CompressionNone
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	return c
}

// KafkaMarshaler is watermill-kafka's DefaultMarshaler with the event key as
// the Kafka key: the [MetadataPartitionKey] metadata (wmbroker.ToMessage sets
// it from the event key), none when it is empty, as broker/kafka writes it.
// The metadata itself stays a header too.
type KafkaMarshaler struct{ wmkafka.DefaultMarshaler }

// Marshal implements wmkafka.Marshaler.
func (m KafkaMarshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := m.DefaultMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if key := msg.Metadata.Get(MetadataPartitionKey); key != "" {
		pm.Key = sarama.StringEncoder(key)
	}
	return pm, nil
}

// ClassifyKafkaError classifies the errors of a watermill-kafka publisher
// for broker.WithClassifier. Too large, invalid topic and invalid record
// wrap outbox.ErrPermanent (the broker refused them). No broker, no leader,
// not enough replicas and network errors wrap outbox.ErrUnreachable. Every
// error but a permanent one also wraps outbox.ErrUnknownOutcome: sarama
// retries a message before it gives up, and an earlier attempt may have
// been appended.
func ClassifyKafkaError(err error) error {
	for _, target := range []error{sarama.ErrMessageSizeTooLarge, sarama.ErrInvalidTopic, sarama.ErrInvalidRecord} {
		if errors.Is(err, target) {
			return fmt.Errorf("%w: %w", outbox.ErrPermanent, err)
		}
	}
	var netErr net.Error
	unreachable := errors.As(err, &netErr)
	for _, target := range []error{
		sarama.ErrOutOfBrokers, sarama.ErrNotConnected, sarama.ErrBrokerNotAvailable,
		sarama.ErrLeaderNotAvailable, sarama.ErrNotLeaderForPartition, sarama.ErrRequestTimedOut,
		sarama.ErrNetworkException, sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend,
		io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
	} {
		unreachable = unreachable || errors.Is(err, target)
	}
	if unreachable {
		return fmt.Errorf("%w: %w: %w", outbox.ErrUnreachable, outbox.ErrUnknownOutcome, err)
	}
	return fmt.Errorf("%w: %w", outbox.ErrUnknownOutcome, err)
}
