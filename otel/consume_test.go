package otel_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	outboxotel "github.com/outboxkit/outbox/otel"
)

// A handler's error is recorded on the process span, which continues the
// writer's trace from the headers.
func TestConsumeTracerRecordsHandlerError(t *testing.T) {
	t.Parallel()
	rec, _, opts := newTracing(t)
	errHandler := errors.New("order unknown")
	const id = "0198c4c2-0000-7000-8000-000000000001"
	headers := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	_, end := outboxotel.NewConsumeTracer(opts...).Start(context.Background(), "", id, headers)
	end(errHandler)

	process := spanNamed(t, rec, "process") // no topic
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", process.SpanContext().TraceID().String())
	require.Equal(t, "00f067aa0ba902b7", process.Parent().SpanID().String())
	require.Equal(t, codes.Error, process.Status().Code)
	require.Len(t, process.Events(), 1, "the error is recorded")
	requireAttrs(t, process, attribute.String("messaging.message.id", id))
	require.NotContains(t, attrKeys(process), attribute.Key("messaging.message.conversation_id"))
}
