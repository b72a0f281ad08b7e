package kafka_test

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
)

func Example() {
	// The broker `make services` starts; use your cluster's brokers instead.
	brokers := strings.Split(cmp.Or(os.Getenv("OUTBOX_KAFKA_BROKERS"), "127.0.0.1:9092"), ",")
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
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
	for _, err := range errs {
		fmt.Println(err) // unknown outcome, unreachable, permanent...: see broker.Publisher
	}
	fmt.Println("all published:", errs == nil)
	// Output: all published: true
}
