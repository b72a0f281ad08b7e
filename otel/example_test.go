package otel_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// Example wires tracing and metrics into a store, a relay and a Watermill
// consumer. Without the With...Provider options the global providers are
// used.
func Example() {
	ctx := context.Background()
	tp := sdktrace.NewTracerProvider() // add your exporter here
	mp := sdkmetric.NewMeterProvider() // e.g. with the Prometheus exporter as reader
	opts := []outboxotel.Option{
		outboxotel.WithTracerProvider(tp),
		outboxotel.WithMeterProvider(mp),
		outboxotel.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
	}

	pool, err := pgxpool.New(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	st, err := postgres.New(pool, postgres.Config{Tracer: outboxotel.NewWriteTracer(opts...)})
	if err != nil {
		log.Fatal(err)
	}
	unregister, err := outboxotel.RegisterStoreMetrics(st, opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer unregister()

	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	r, err := relay.New(st, wmbroker.New(pubsub), relay.Config{Tracer: outboxotel.NewRelayTracer(opts...)})
	if err != nil {
		log.Fatal(err)
	}
	go r.Run(ctx)

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(outboxwatermill.Middleware(opts...))
	router.AddConsumerHandler("orders", "orders", pubsub, func(msg *message.Message) error {
		// msg.Context() continues the writer's trace and carries its
		// correlation ID.
		slog.InfoContext(msg.Context(), "order placed", "correlation_id", outbox.CorrelationID(msg.Context()))
		return nil
	})
	go router.Run(ctx)

	// In a request handler: ctx carries the request's span, whose context is
	// stored with the event.
	ctx, span := tp.Tracer("app").Start(ctx, "POST /orders")
	defer span.End()
	event, err := outbox.Envelope[map[string]string]{EventType: "order.placed.v1", Data: map[string]string{"id": "42"}}.
		Event("orders", "order", "42")
	if err != nil {
		log.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := st.AddTx(ctx, tx, event); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}

// ExampleConsumeTracer shows what a handler sees of a message that the
// relay published: the writer's trace and the correlation ID.
func ExampleConsumeTracer() {
	tracer := outboxotel.NewConsumeTracer(
		outboxotel.WithTracerProvider(sdktrace.NewTracerProvider()),
		outboxotel.WithPropagators(propagation.TraceContext{}),
	)
	headers := map[string]string{
		outbox.HeaderTraceparent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		outbox.HeaderCorrelationID: "corr-42",
	}
	ctx, end := tracer.Start(context.Background(), "orders", "0198c4c2-7f1a-7000-8000-000000000042", headers)
	fmt.Println("trace:", trace.SpanContextFromContext(ctx).TraceID())
	fmt.Println("correlation:", outbox.CorrelationID(ctx))
	end(nil)
	// Output:
	// trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// correlation: corr-42
}
