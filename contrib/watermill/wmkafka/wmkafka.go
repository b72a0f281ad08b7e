// Package wmkafka is the relay's path to Kafka through a watermill-kafka
// publisher, for services that keep their producer in Watermill: a safe
// sarama configuration, a marshaler that keys records by the event key, and
// the classification of sarama's errors. broker/kafka publishes to Kafka
// faster (a batch per request) and needs neither sarama nor Watermill.
package wmkafka

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	watermillkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
)

// NewPublisher returns a publisher for the relay that publishes through
// a watermill-kafka publisher to brokers, built with
// [SaramaConfig] and [Marshaler], its errors classified by
// [Classify]. Close the watermill-kafka publisher when done.
// broker/kafka publishes to Kafka faster (a batch per request); this path is
// for services that keep their producer in Watermill.
func NewPublisher(brokers []string) (*wmbroker.Publisher, *watermillkafka.Publisher, error) {
	kp, err := watermillkafka.NewPublisher(watermillkafka.PublisherConfig{
		Brokers:               brokers,
		Marshaler:             Marshaler{},
		OverwriteSaramaConfig: SaramaConfig(),
	}, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("wmkafka: publisher: %w", err)
	}
	return wmbroker.New(kp, wmbroker.WithClassifier(Classify)), kp, nil
}

// SaramaConfig returns the sarama configuration of a watermill-kafka
// publisher that the relay publishes through: an idempotent producer with
// acks from all in-sync replicas and one request in flight per connection,
// so that a resend after a lost ack is dropped by the broker instead of
// duplicated and never overtakes an earlier message; sarama's hash
// partitioner on the key, the one broker/kafka reproduces; no compression;
// bounded timeouts (3 s per network step) and one retry. watermill-kafka's
// own default (acks from the leader only, not idempotent) duplicates a
// message whose ack is lost.
func SaramaConfig() *sarama.Config {
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

// Marshaler is watermill-kafka's DefaultMarshaler with the event key as
// the Kafka key: the wmbroker.MetadataPartitionKey metadata (wmbroker.ToMessage sets
// it from the event key), none when it is empty, as broker/kafka writes it.
// The metadata itself stays a header too.
type Marshaler struct {
	watermillkafka.DefaultMarshaler
}

// Marshal implements watermillkafka.Marshaler.
func (m Marshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	pm, err := m.DefaultMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, err
	}
	if key := msg.Metadata.Get(wmbroker.MetadataPartitionKey); key != "" {
		pm.Key = sarama.StringEncoder(key)
	}
	return pm, nil
}

// Classify classifies the errors of a watermill-kafka publisher
// for broker.WithClassifier. Too large, invalid topic and invalid record
// wrap outbox.ErrPermanent (the broker refused them). No broker, no leader,
// not enough replicas and network errors wrap outbox.ErrUnreachable. Every
// error but a permanent one also wraps outbox.ErrUnknownOutcome: sarama
// retries a message before it gives up, and an earlier attempt may have
// been appended.
func Classify(err error) error {
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
