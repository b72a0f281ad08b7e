package outbox

// Header names that travel with each published message. The Watermill names
// are Watermill's own, so Watermill subscribers and middleware read them as
// ordinary metadata.
const (
	// HeaderMessageUUID carries the event ID; Watermill reads it as the
	// message UUID. The relay sets it, so events may not.
	HeaderMessageUUID = "_watermill_message_uuid"
	// HeaderCorrelationID is Watermill's correlation-ID metadata key
	// (middleware.CorrelationIDMetadataKey).
	HeaderCorrelationID = "correlation_id"
	// HeaderEventType, HeaderAggregateType and HeaderAggregateID copy the
	// row's columns into the message.
	HeaderEventType     = "event_type"
	HeaderAggregateType = "aggregate_type"
	HeaderAggregateID   = "aggregate_id"
	// HeaderTraceparent and HeaderTracestate carry the W3C trace context of
	// the transaction that wrote the event.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// reservedHeaders are set by the relay from the row and may not be set by a
// writer: a writer's value would contradict the event ID.
var reservedHeaders = []string{HeaderMessageUUID}
