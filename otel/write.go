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

// WriteTracer stores the trace context of the writing transaction in the
// headers of each event, so that the relay can link to it and the consumer
// continue it. Set it as a store's Config.Tracer. It is safe for concurrent
// use.
//
// An event that already carries a traceparent header keeps its own: the
// tracer never overwrites one. The correlation ID is not its business:
// outbox.Prepare fills it (envelope, else context, else a new one).
type WriteTracer struct {
	tracer      trace.Tracer
	prop        propagation.TextMapPropagator
	system      attribute.KeyValue
	createSpans bool
}

var _ outbox.WriteTracer = (*WriteTracer)(nil)

// NewWriteTracer returns a write tracer. It uses [WithTracerProvider] (only
// with [WithCreateSpans]), [WithPropagators], [WithMessagingSystem] and
// [WithCreateSpans].
func NewWriteTracer(opts ...Option) *WriteTracer {
	c := newConfig(opts)
	return &WriteTracer{tracer: c.tracer(), prop: c.prop, system: c.systemAttr(), createSpans: c.createSpans}
}

// createSpanKey marks the span that TraceWriteStart started, so that
// TraceWriteEnd ends that one and never the caller's.
type createSpanKey struct{}

// TraceWriteStart implements [outbox.WriteTracer]. When ctx carries a valid
// span (or WithCreateSpans is set), it injects the span's context into each
// event's headers that has no traceparent yet.
func (w *WriteTracer) TraceWriteStart(ctx context.Context, data outbox.TraceWriteStartData) context.Context {
	if len(data.Events) == 0 {
		return ctx
	}
	if w.createSpans {
		var span trace.Span
		ctx, span = w.tracer.Start(ctx, spanName("create", commonTopic(data.Events)),
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(w.createAttrs(data.Events)...))
		ctx = context.WithValue(ctx, createSpanKey{}, span)
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	carrier := propagation.MapCarrier{}
	w.prop.Inject(ctx, carrier)
	for i := range data.Events {
		e := &data.Events[i]
		if e.Headers[outbox.HeaderTraceparent] != "" {
			continue
		}
		if e.Headers == nil {
			e.Headers = make(map[string]string, len(carrier))
		}
		for k, v := range carrier {
			if _, ok := e.Headers[k]; !ok {
				e.Headers[k] = v
			}
		}
	}
	return ctx
}

// TraceWriteEnd implements [outbox.WriteTracer]: it ends the create span, if
// any, with the write's error.
func (w *WriteTracer) TraceWriteEnd(ctx context.Context, data outbox.TraceWriteEndData) {
	span, ok := ctx.Value(createSpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, data.Err.Error())
		span.SetAttributes(semconv.ErrorType(data.Err))
	}
	span.End()
}

func (w *WriteTracer) createAttrs(events []outbox.Event) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		w.system,
		semconv.MessagingOperationTypeCreate,
		semconv.MessagingOperationName("create"),
	}
	if topic := commonTopic(events); topic != "" {
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	if len(events) == 1 {
		attrs = append(attrs, semconv.MessagingMessageID(events[0].ID.String()))
		if id := events[0].Headers[outbox.HeaderCorrelationID]; id != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(id))
		}
	} else {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(events)))
	}
	return attrs
}

// commonTopic returns the topic of all events, or "" when they differ.
func commonTopic(events []outbox.Event) string {
	topic := events[0].Topic
	for _, e := range events[1:] {
		if e.Topic != topic {
			return ""
		}
	}
	return topic
}

// spanName follows the semantic conventions: "{operation} {destination}",
// or the operation alone when the destination is unknown.
func spanName(operation, destination string) string {
	if destination == "" {
		return operation
	}
	return operation + " " + destination
}
