package outboxwatermill

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	outboxotel "github.com/outboxkit/outbox/otel"
)

// Middleware returns a router middleware that gives handlers tracing and
// the correlation ID in one call: package otel's middleware continues the
// writer's trace in a "process {topic}" span and puts the message's
// correlation ID into msg.Context() (see outbox.CorrelationID), and
// Watermill's CorrelationID middleware copies it into the messages the
// handler returns. Messages published through a [Publisher] under the
// handler's context get it from there.
//
// opts are package otel's options: WithTracerProvider, WithPropagators and
// WithMessagingSystem apply; the global providers are the defaults.
func Middleware(opts ...outboxotel.Option) message.HandlerMiddleware {
	trace := outboxotel.Middleware(opts...)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return trace(middleware.CorrelationID(h))
	}
}
