package outbox

import "context"

type correlationKey struct{}

// WithCorrelationID returns a context that carries a correlation ID. Stores
// copy it into the [HeaderCorrelationID] header of events written under that
// context when the event has none.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation ID carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}
