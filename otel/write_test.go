package otel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
	outboxotel "github.com/outboxkit/outbox/otel"
)

// TestWriteTracerInjects calls the hook as a store does and checks what it
// leaves in the headers.
func TestWriteTracerInjects(t *testing.T) {
	t.Parallel()
	rec, tracer, opts := newTracing(t)
	w := outboxotel.NewWriteTracer(opts...)
	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	ctx, span := tracer.Start(baggage.ContextWithBaggage(context.Background(), bag), "request")
	defer span.End()

	own := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	events := []outbox.Event{
		{Topic: "orders", Headers: map[string]string{outbox.HeaderCorrelationID: "c"}},
		{Topic: "orders", Headers: map[string]string{outbox.HeaderTraceparent: own}},
		{Topic: "orders"},
	}
	gotCtx := w.TraceWriteStart(ctx, outbox.TraceWriteStartData{Table: "t", Events: events})
	w.TraceWriteEnd(gotCtx, outbox.TraceWriteEndData{})

	require.Equal(t, span.SpanContext().WithRemote(true), spanContextOf(events[0].Headers))
	require.Equal(t, "tenant=acme", events[0].Headers["baggage"])
	require.Equal(t, "c", events[0].Headers[outbox.HeaderCorrelationID])
	require.Equal(t, map[string]string{outbox.HeaderTraceparent: own}, events[1].Headers, "never overwritten")
	require.Equal(t, span.SpanContext().WithRemote(true), spanContextOf(events[2].Headers))
	require.Empty(t, rec.Ended(), "the caller's span is not the tracer's to end")
}

func TestWriteTracerWithoutSpan(t *testing.T) {
	t.Parallel()
	_, _, opts := newTracing(t)
	w := outboxotel.NewWriteTracer(opts...)
	events := []outbox.Event{{Topic: "orders", Headers: map[string]string{}}}
	ctx := w.TraceWriteStart(context.Background(), outbox.TraceWriteStartData{Events: events})
	w.TraceWriteEnd(ctx, outbox.TraceWriteEndData{})
	require.Empty(t, events[0].Headers)
}

func TestWriteTracerCreateSpan(t *testing.T) {
	t.Parallel()
	rec, tracer, opts := newTracing(t)
	w := outboxotel.NewWriteTracer(append(opts, outboxotel.WithCreateSpans(), outboxotel.WithMessagingSystem("rabbitmq"))...)
	ctx, request := tracer.Start(context.Background(), "request")
	defer request.End()

	events := []outbox.Event{{Topic: "orders", Headers: map[string]string{}}, {Topic: "invoices", Headers: map[string]string{}}}
	writeCtx := w.TraceWriteStart(ctx, outbox.TraceWriteStartData{Events: events})
	w.TraceWriteEnd(writeCtx, outbox.TraceWriteEndData{Err: errors.New("insert: connection lost")})

	create := spanNamed(t, rec, "create") // two topics: no destination in the name
	require.Equal(t, trace.SpanKindProducer, create.SpanKind())
	require.Equal(t, request.SpanContext().SpanID(), create.Parent().SpanID())
	require.Equal(t, codes.Error, create.Status().Code)
	requireAttrs(t, create,
		attribute.String("messaging.system", "rabbitmq"),
		attribute.String("messaging.operation.type", "create"),
		attribute.Int("messaging.batch.message_count", 2),
	)
	for _, e := range events {
		require.Equal(t, create.SpanContext().WithRemote(true), spanContextOf(e.Headers))
	}
}
