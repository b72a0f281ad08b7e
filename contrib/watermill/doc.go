// Package outboxwatermill connects the outbox to Watermill routers: handlers
// publish transactionally through a message.Publisher that writes into the
// outbox, the relay runs inside a router, consumers get tracing and the
// correlation ID from one middleware, and an inbox gives handlers
// exactly-once effects on top of at-least-once delivery.
//
//   - [NewPublisher] returns a message.Publisher that writes each message as
//     an outbox event inside the caller's transaction (pgx.Tx with
//     *postgres.Store, *sql.Tx with *mysql.Store). A handler that published
//     through a broker's publisher becomes transactional by changing the one
//     constructor: its messages reach the broker if and only if its
//     transaction commits, with their UUID, metadata and payload unchanged.
//   - [RelayPlugin] runs a relay while a router runs and stops it gracefully
//     when the router closes.
//   - [Middleware] continues the writer's trace on the consumer side and
//     carries the correlation ID (package otel's middleware, plus Watermill's
//     correlation-ID propagation to produced messages).
//   - [Inbox] runs a handler in a database transaction of its own that also
//     records the message UUID, so a redelivered message is acked without
//     running the handler's effects twice. [MigrateInbox] creates its table;
//     [Inbox.Prune] deletes the rows of messages too old to be redelivered.
//
// A handler that consumes through the inbox and publishes through the outbox
// does all of it in one transaction:
//
//	inbox, _ := outboxwatermill.NewPgxInbox(pool, outboxwatermill.InboxConfig{})
//	router.AddPlugin(outboxwatermill.RelayPlugin(r))
//	router.AddMiddleware(outboxwatermill.Middleware())
//	router.AddConsumerHandler("spellcheck", "batch.events", sub,
//		inbox.Handler(func(ctx context.Context, tx pgx.Tx, msg *message.Message) error {
//			// ... business writes in tx ...
//			out := message.NewMessage(watermill.NewUUID(), payload)
//			out.SetContext(ctx) // carries the trace and the correlation ID
//			return outboxwatermill.NewPublisher(st, tx).Publish("spellcheck.results", out)
//		}))
//
// Import it as outboxwatermill.
package outboxwatermill
