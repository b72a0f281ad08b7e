package kafka_test

import (
	"context"
	"fmt"
	"log"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
)

func Example() {
	// A development broker on 127.0.0.1; use your cluster's brokers instead.
	dev, err := devkafka.New(devkafka.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()

	pub, err := kafka.New(kafka.Config{Brokers: []string{dev.Addr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	id := uuid.New()
	errs := pub.Publish(context.Background(), []*outbox.Message{{
		ID:    id,
		Topic: "orders",
		Key:   "order-42",
		Value: []byte(`{"order_id":"order-42","total":1999}`),
		Headers: map[string]string{
			outbox.HeaderMessageUUID:   id.String(),
			outbox.HeaderCorrelationID: "req-7",
			outbox.HeaderEventType:     "order.placed",
		},
	}})
	fmt.Println("all published:", errs == nil)
	// Output: all published: true
}
