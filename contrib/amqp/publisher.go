// Package outboxamqp publishes outbox events to RabbitMQ through
// watermill-amqp and the generic Watermill adapter (broker/wmbroker): the
// configuration under which the relay's promises hold on RabbitMQ, and the
// classification of watermill-amqp's errors.
//
// Each topic is a durable consistent-hash exchange (RabbitMQ's
// rabbitmq_consistent_hash_exchange plugin) that routes a message by its
// event key, so all events of a key land in the same queue, in write order.
// Messages are persistent and every publish waits for its publisher confirm.
// docs/rabbitmq.md says which promises hold and why.
//
//	pub, amqpPub, err := outboxamqp.NewPublisher("amqp://guest:guest@127.0.0.1:5672/", nil)
//	defer amqpPub.Close()
//	r, err := relay.New(st, pub, relay.Config{})
//
// Import it as outboxamqp.
package outboxamqp

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/outboxkit/outbox/broker/wmbroker"
)

// ExchangeType is the type of the topics' exchanges: RabbitMQ's
// consistent-hash exchange, which needs the rabbitmq_consistent_hash_exchange
// plugin.
const ExchangeType = "x-consistent-hash"

// NewPublisher returns a publisher for the relay that publishes through a
// watermill-amqp publisher to the server at url, built with [Config], its
// errors classified by [Classify]. The server must answer: watermill-amqp
// connects here, and reconnects by itself later. Close the watermill-amqp
// publisher when done. logger may be nil.
func NewPublisher(url string, logger watermill.LoggerAdapter) (*wmbroker.Publisher, *wamqp.Publisher, error) {
	if logger == nil {
		logger = watermill.NopLogger{} // watermill-amqp's channel pool needs one
	}
	ap, err := wamqp.NewPublisher(Config(url), logger)
	if err != nil {
		return nil, nil, fmt.Errorf("outboxamqp: publisher: %w", err)
	}
	return wmbroker.New(ap, wmbroker.WithClassifier(Classify)), ap, nil
}

// Config returns the watermill-amqp configuration of the publisher and of
// its consumers:
//
//   - each topic is a durable exchange of [ExchangeType] named after the
//     topic, that hashes the partition_key header (the event key, see
//     wmbroker.MetadataPartitionKey): every event of a key goes to the same
//     queue;
//   - a subscriber consumes a durable queue named after the topic, bound with
//     weight 1; to spread the keys over several queues, give each consumer
//     its own queue (Queue.GenerateName), each bound with its weight;
//   - messages are persistent, and Publish returns once the broker confirmed
//     the message (publisher confirms): without confirms, a message lost with
//     its connection would count as published;
//   - a channel per publish, not watermill-amqp's channel pool: the pool
//     loses a channel each time it fails to reopen one after a broken
//     connection, and once it is empty every publish waits for ever;
//   - bounded dial (5 s) and heartbeats (10 s), so that a publish on a
//     server gone silent fails within 15 s; reconnects with a backoff from
//     0.5 s doubling to 5 s.
//
// A message is only kept by a queue bound before it arrived: declare the
// queues (start the consumers) before the relay publishes.
func Config(url string) wamqp.Config {
	c := wamqp.NewDurablePubSubConfig(url, wamqp.GenerateQueueNameTopicName)
	c.Connection.AmqpConfig = &amqp.Config{
		Dial:      amqp.DefaultDial(5 * time.Second),
		Heartbeat: 10 * time.Second,
	}
	c.Connection.Reconnect = &wamqp.ReconnectConfig{
		BackoffInitialInterval:     500 * time.Millisecond,
		BackoffRandomizationFactor: 0.2,
		BackoffMultiplier:          2,
		BackoffMaxInterval:         5 * time.Second,
	}
	c.Exchange.Type = ExchangeType
	c.Exchange.Arguments = amqp.Table{"hash-header": wmbroker.MetadataPartitionKey}
	c.QueueBind.GenerateRoutingKey = func(string) string { return "1" } // the queue's weight
	c.Publish.ConfirmDelivery = true
	return c
}
