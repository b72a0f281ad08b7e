package outboxwatermill_test

import (
	"context"
	"encoding/json"
	"log"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox/broker/kafka"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// Example wires a router whose handler consumes through the inbox and
// publishes through the outbox, in one transaction, with the relay running
// in the same router. See examples/batch-orchestrator for a complete
// program.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, migrations.DefaultTable); err != nil {
		log.Fatal(err)
	}
	if err := outboxwatermill.MigrateInbox(ctx, db, migrations.PostgreSQL, outboxwatermill.DefaultInboxTable); err != nil {
		log.Fatal(err)
	}
	st, err := postgres.New(pool, postgres.Config{})
	if err != nil {
		log.Fatal(err)
	}
	pub, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	r, err := relay.New(st, pub, relay.Config{})
	if err != nil {
		log.Fatal(err)
	}
	inbox, err := outboxwatermill.NewPgxInbox(pool, outboxwatermill.InboxConfig{})
	if err != nil {
		log.Fatal(err)
	}

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	router.AddPlugin(outboxwatermill.RelayPlugin(r))
	router.AddMiddleware(outboxwatermill.Middleware())
	var orders message.Subscriber // e.g. a watermill-kafka subscriber
	router.AddConsumerHandler("invoicing", "orders.placed", orders,
		inbox.Handler(func(ctx context.Context, tx pgx.Tx, msg *message.Message) error {
			var order struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(msg.Payload, &order); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO invoices (order_id) VALUES ($1)", order.ID); err != nil {
				return err
			}
			invoice := message.NewMessage(watermill.NewUUID(), msg.Payload)
			invoice.Metadata.Set(outboxwatermill.MetadataPartitionKey, order.ID)
			invoice.SetContext(ctx) // the trace and correlation ID of the order
			// The one line that makes publishing transactional: the invoice
			// is published if and only if tx commits.
			return outboxwatermill.NewPublisher(st, tx).Publish("invoices.created", invoice)
		}))
	if err := router.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
