package otel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
)

// RelayTracer traces and measures a relay. Set it as relay.Config.Tracer: it
// implements both [outbox.PublishTracer] and [outbox.SettleTracer]. It is
// safe for concurrent use, so several relays may share one.
//
// For each batch and topic it records a "publish {topic}" span of kind
// producer, with a link to the stored trace context of each message. It does
// not inject its own context into the messages: their headers keep carrying
// the writer's, so the consumer continues the writer's trace.
//
// The span's operation type is "send" and its operation name "publish"
// (semantic conventions v1.43.0); a Kafka client's own instrumentation, if
// any, adds its "send" spans as children.
type RelayTracer struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	system  attribute.KeyValue
	logger  *slog.Logger
	metrics relayMetrics
}

var (
	_ outbox.PublishTracer = (*RelayTracer)(nil)
	_ outbox.SettleTracer  = (*RelayTracer)(nil)
)

// NewRelayTracer returns a relay tracer. It uses [WithTracerProvider],
// [WithMeterProvider], [WithPropagators], [WithMessagingSystem] and
// [WithLogger]. An error creating an instrument goes to the global
// OpenTelemetry error handler, as in the contrib instrumentations, and the
// instrument reports nothing.
func NewRelayTracer(opts ...Option) *RelayTracer {
	c := newConfig(opts)
	return &RelayTracer{
		tracer:  c.tracer(),
		prop:    c.prop,
		system:  c.systemAttr(),
		logger:  c.logger,
		metrics: newRelayMetrics(c.meter()),
	}
}

// TracePublishStart implements [outbox.PublishTracer]. It drops a malformed
// traceparent (and its tracestate) from a message's headers with a warning,
// so the message is published without it rather than with a context that
// consumers cannot parse, and starts the publish span.
func (r *RelayTracer) TracePublishStart(ctx context.Context, data outbox.TracePublishStartData) context.Context {
	links := make([]trace.Link, 0, len(data.Messages))
	for _, m := range data.Messages {
		r.dropMalformed(ctx, data.Topic, m)
		sc := trace.SpanContextFromContext(r.prop.Extract(context.Background(), propagation.MapCarrier(m.Headers)))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := []attribute.KeyValue{
		r.system,
		semconv.MessagingDestinationName(data.Topic),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
	}
	if len(data.Messages) == 1 {
		m := data.Messages[0]
		attrs = append(attrs, semconv.MessagingMessageID(m.ID.String()))
		if id := m.Headers[outbox.HeaderCorrelationID]; id != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(id))
		}
	} else {
		// The conventions set the count on batches only.
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(data.Messages)))
	}
	ctx, _ = r.tracer.Start(ctx, spanName("publish", data.Topic),
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
	return ctx
}

// maxLoggedHeader bounds how much of a malformed header value is logged.
const maxLoggedHeader = 128

func (r *RelayTracer) dropMalformed(ctx context.Context, topic string, m *outbox.Message) {
	tp, ok := m.Headers[outbox.HeaderTraceparent]
	if !ok {
		return
	}
	// Checked as W3C whatever the configured propagator is: the header name
	// is W3C's.
	carrier := propagation.MapCarrier{outbox.HeaderTraceparent: tp}
	if trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier)).IsValid() {
		return
	}
	delete(m.Headers, outbox.HeaderTraceparent)
	delete(m.Headers, outbox.HeaderTracestate)
	r.logger.WarnContext(ctx, "outboxotel: dropped malformed traceparent; publishing without it",
		"topic", topic, "event_id", m.ID, "traceparent", tp[:min(len(tp), maxLoggedHeader)])
}

// TracePublishEnd implements [outbox.PublishTracer]. When messages failed it
// sets the span's status to Error and error.type to the class of the first
// failure that is not a skip: "permanent", "unreachable" or "transient".
func (r *RelayTracer) TracePublishEnd(ctx context.Context, data outbox.TracePublishEndData) {
	span := trace.SpanFromContext(ctx)
	defer span.End()
	topic := metric.WithAttributeSet(attribute.NewSet(semconv.MessagingDestinationName(data.Topic)))
	r.metrics.duration.Record(ctx, data.Duration.Seconds(), topic)
	var first error
	failed := 0
	for _, err := range data.Errs {
		if err == nil {
			continue
		}
		failed++
		if first == nil || errors.Is(first, outbox.ErrSkipped) {
			first = err
		}
	}
	if first == nil {
		return
	}
	span.RecordError(first)
	span.SetStatus(codes.Error, fmt.Sprintf("%d of %d messages not published: %v", failed, len(data.Messages), first))
	span.SetAttributes(semconv.ErrorTypeKey.String(errorClass(first)))
}

func errorClass(err error) string {
	switch {
	case errors.Is(err, outbox.ErrPermanent):
		return "permanent"
	case errors.Is(err, outbox.ErrUnreachable):
		return "unreachable"
	default:
		return "transient"
	}
}

// TraceSettle implements [outbox.SettleTracer]: it records the relay's
// counters and histograms for one topic of one batch.
func (r *RelayTracer) TraceSettle(ctx context.Context, data outbox.TraceSettleData) {
	r.metrics.settle(ctx, data)
}
