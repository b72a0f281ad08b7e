package otel

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
)

// Middleware returns a Watermill handler middleware that continues the
// writer's trace on the consumer side. For each message it extracts the
// trace context from the metadata with the propagator, starts a
// "process {topic}" span of kind consumer as its child, puts the correlation
// ID from the metadata into the context ([outbox.WithCorrelationID]), sets
// that context on the message for the handler, and records the handler's
// error on the span.
//
// It uses [WithTracerProvider], [WithPropagators] and [WithMessagingSystem].
func Middleware(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	tracer, prop, system := c.tracer(), c.prop, c.systemAttr()
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := prop.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
			topic := message.SubscribeTopicFromCtx(ctx)
			attrs := []attribute.KeyValue{
				system,
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				semconv.MessagingMessageID(msg.UUID),
			}
			if topic != "" {
				attrs = append(attrs, semconv.MessagingDestinationName(topic))
			}
			correlationID := msg.Metadata.Get(outbox.HeaderCorrelationID)
			if correlationID != "" {
				attrs = append(attrs, semconv.MessagingMessageConversationID(correlationID))
				ctx = outbox.WithCorrelationID(ctx, correlationID)
			}
			ctx, span := tracer.Start(ctx, spanName("process", topic),
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
			defer span.End()
			msg.SetContext(ctx)
			produced, err := h(msg)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				span.SetAttributes(semconv.ErrorType(err))
			}
			return produced, err
		}
	}
}
