package outboxwatermill

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	outboxotel "github.com/outboxkit/outbox/otel"
)

// Middleware returns a router middleware that gives handlers tracing and
// the correlation ID in one call. For each message it continues the writer's
// trace from the metadata in a "process {topic}" span of kind consumer
// (outboxotel.ConsumeTracer), puts the message's correlation ID into
// msg.Context() (see outbox.CorrelationID), records the handler's error on
// the span, and lets Watermill's CorrelationID middleware copy the
// correlation ID into the messages the handler returns. Messages published
// through a [Publisher] under the handler's context get it from there.
//
// opts are package otel's options: WithTracerProvider, WithPropagators and
// WithMessagingSystem apply; the global providers are the defaults.
func Middleware(opts ...outboxotel.Option) message.HandlerMiddleware {
	tracer := outboxotel.NewConsumeTracer(opts...)
	return func(h message.HandlerFunc) message.HandlerFunc {
		h = middleware.CorrelationID(h)
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx, end := tracer.Start(msg.Context(), message.SubscribeTopicFromCtx(msg.Context()), msg.UUID, msg.Metadata)
			msg.SetContext(ctx)
			produced, err := h(msg)
			end(err)
			return produced, err
		}
	}
}
