package otel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
)

// ConsumeTracer continues a writer's trace on the consumer side, whatever
// the consumer library: contrib/watermill's Middleware wraps it for
// Watermill routers.
type ConsumeTracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system attribute.KeyValue
}

// NewConsumeTracer returns a consume tracer. It uses [WithTracerProvider],
// [WithPropagators] and [WithMessagingSystem].
func NewConsumeTracer(opts ...Option) *ConsumeTracer {
	c := newConfig(opts)
	return &ConsumeTracer{tracer: c.tracer(), prop: c.prop, system: c.systemAttr()}
}

// Start extracts the trace context from a message's headers, starts a
// "process {topic}" span of kind consumer as its child, and puts the
// message's correlation ID into the returned context
// ([outbox.WithCorrelationID]). Call end with the handler's error when the
// message is handled.
func (t *ConsumeTracer) Start(ctx context.Context, topic, messageID string, headers map[string]string) (_ context.Context, end func(error)) {
	ctx = t.prop.Extract(ctx, propagation.MapCarrier(headers))
	attrs := []attribute.KeyValue{
		t.system,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingMessageID(messageID),
	}
	if topic != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	if id := headers[outbox.HeaderCorrelationID]; id != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(id))
		ctx = outbox.WithCorrelationID(ctx, id)
	}
	ctx, span := t.tracer.Start(ctx, spanName("process", topic),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorType(err))
		}
		span.End()
	}
}
