// Command rabbitmq moves one service's events to RabbitMQ: a payments
// service writes each payment's events in its PostgreSQL transactions (every
// fourth payment rolled back on purpose), a relay publishes the committed
// ones through watermill-amqp, and a Watermill AMQP subscriber reads them
// back. It exits with a summary, non-zero if an event was lost, arrived out
// of its payment's order, or came from a rolled-back transaction.
//
// It uses PostgreSQL and RabbitMQ on 127.0.0.1 (`make services` starts both).
// OUTBOX_POSTGRES_URL and OUTBOX_AMQP_URL point it at other servers,
// OUTBOX_TABLE names the outbox table (default event_outbox) and OUTBOX_TOPIC
// the topic, which is the exchange and the consumer's queue (default
// rabbitmq.payments).
//
//	go run ./examples/rabbitmq
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"

	"github.com/outboxkit/outbox"
	outboxamqp "github.com/outboxkit/outbox/contrib/amqp"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
)

const payments = 12

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitmq:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	amqpURL := cmp.Or(os.Getenv("OUTBOX_AMQP_URL"), "amqp://guest:guest@127.0.0.1:5672/")
	topic := cmp.Or(os.Getenv("OUTBOX_TOPIC"), "rabbitmq.payments")

	db, err := openPayments(ctx, cmp.Or(os.Getenv("OUTBOX_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"),
		cmp.Or(os.Getenv("OUTBOX_TABLE"), migrations.DefaultTable))
	if err != nil {
		return err
	}
	defer db.Close()

	// The consumer first: RabbitMQ keeps a message only for the queues bound
	// when it arrives. Subscribe declares the topic's exchange and queue.
	sub, err := wamqp.NewSubscriber(outboxamqp.Config(amqpURL), watermill.NopLogger{})
	if err != nil {
		return fmt.Errorf("rabbitmq: %w (is RabbitMQ running? set OUTBOX_AMQP_URL)", err)
	}
	defer sub.Close()
	deliveries, err := sub.Subscribe(ctx, topic)
	if err != nil {
		return err
	}

	// The whole wiring: a publisher to RabbitMQ, a relay over the outbox.
	pub, amqpPub, err := outboxamqp.NewPublisher(amqpURL, nil)
	if err != nil {
		return err
	}
	defer amqpPub.Close()
	r, err := relay.New(db.st, pub, relay.Config{})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	// The service writes; the consumer reads until every committed event came.
	run := outbox.NewID().String()[24:] // the random part of the UUIDv7
	committed, rolledBack := map[string][]string{}, map[string]bool{}
	for i := 1; i <= payments; i++ {
		paymentID := fmt.Sprintf("%s-payment-%d", run, i)
		ids, err := db.Pay(ctx, topic, paymentID, run, 100*i, i%4 == 0)
		if err != nil {
			return err
		}
		if i%4 == 0 {
			for _, id := range ids {
				rolledBack[id] = true
			}
			fmt.Fprintf(out, "wrote %s and rolled it back\n", paymentID)
		} else {
			committed[paymentID] = ids
			fmt.Fprintf(out, "wrote %s: %d events committed\n", paymentID, len(ids))
		}
	}
	c := newChecker(committed, rolledBack)
	for !c.Done() {
		select {
		case msg := <-deliveries:
			c.Receive(out, msg, run)
			msg.Ack()
		case <-ctx.Done():
			return fmt.Errorf("%d events never arrived: %w", c.Missing(), ctx.Err())
		}
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s (relay: %+v)\n", c.Summary(), r.Stats())
	return c.Err()
}
