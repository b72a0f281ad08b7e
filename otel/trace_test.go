package otel_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/wmbroker"
	"github.com/outboxkit/outbox/internal/testenv"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/store/postgres"
)

// TestTraceEndToEnd follows one event from a request through PostgreSQL, the
// relay and Watermill to a consumer, and checks that it all is one trace.
func TestTraceEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		create bool
	}{
		{"caller span stored", false},
		{"create span stored", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, tracer, opts := newTracing(t)
			writeOpts := opts
			if tc.create {
				writeOpts = append(slices.Clone(opts), outboxotel.WithCreateSpans())
			}
			st := testenv.PostgresStore(t, postgres.Config{Tracer: outboxotel.NewWriteTracer(writeOpts...)})
			ps := newGoChannel(t)
			msgs := consume(t, ps, "orders", opts)
			runRelay(t, st, wmbroker.New(ps), outboxotel.NewRelayTracer(opts...))

			ctx, request := tracer.Start(context.Background(), "request")
			event := envelopeEvent(t, "orders", "corr-e2e")
			write(t, ctx, st, event)
			request.End()
			requestSC := request.SpanContext()

			// The write: the stored context belongs to the request's trace.
			stored := storedHeaders(t, st, event.ID)
			storedSC := spanContextOf(stored)
			require.True(t, storedSC.IsValid(), "stored headers %v", stored)
			require.Equal(t, requestSC.TraceID(), storedSC.TraceID())
			if tc.create {
				create := spanNamed(t, rec, "create orders")
				require.Equal(t, trace.SpanKindProducer, create.SpanKind())
				require.Equal(t, requestSC.SpanID(), create.Parent().SpanID())
				require.Equal(t, create.SpanContext().SpanID(), storedSC.SpanID())
			} else {
				require.Equal(t, requestSC.SpanID(), storedSC.SpanID())
			}

			// The consumer: the message carries the stored context, once.
			got := receive(t, msgs)
			require.Equal(t, event.ID.String(), got.uuid)
			require.Equal(t, 1, countKeys(got.metadata, outbox.HeaderTraceparent))
			require.Equal(t, stored[outbox.HeaderTraceparent], got.metadata[outbox.HeaderTraceparent])
			require.Equal(t, "corr-e2e", got.metadata[outbox.HeaderCorrelationID])
			require.Equal(t, "corr-e2e", got.correlationID)
			require.Equal(t, requestSC.TraceID(), got.span.TraceID())

			waitSpans(t, rec, "publish orders", "process orders")

			publish := spanNamed(t, rec, "publish orders")
			require.Equal(t, trace.SpanKindProducer, publish.SpanKind())
			require.False(t, publish.Parent().IsValid(), "the relay's span is a root linked to the writer")
			require.Equal(t, []trace.SpanContext{storedSC}, linked(publish))
			requireAttrs(t, publish,
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", "orders"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.operation.name", "publish"),
				attribute.String("messaging.message.id", event.ID.String()),
				attribute.String("messaging.message.conversation_id", "corr-e2e"),
			)
			require.NotContains(t, attrKeys(publish), attribute.Key("messaging.batch.message_count"))
			require.Equal(t, codes.Unset, publish.Status().Code)

			process := spanNamed(t, rec, "process orders")
			require.Equal(t, trace.SpanKindConsumer, process.SpanKind())
			require.Equal(t, requestSC.TraceID(), process.SpanContext().TraceID())
			require.Equal(t, storedSC.SpanID(), process.Parent().SpanID())
			require.True(t, process.Parent().IsRemote())
			require.Equal(t, got.span.SpanID(), process.SpanContext().SpanID())
			requireAttrs(t, process,
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", "orders"),
				attribute.String("messaging.message.id", event.ID.String()),
				attribute.String("messaging.message.conversation_id", "corr-e2e"),
			)
		})
	}
}

// TestMalformedTraceparent checks that a stored traceparent that cannot be
// parsed is dropped with a warning, and that the event is still published.
func TestMalformedTraceparent(t *testing.T) {
	t.Parallel()
	rec, tracer, opts := newTracing(t)
	var logs testenv.Buffer
	st := testenv.PostgresStore(t, postgres.Config{Tracer: outboxotel.NewWriteTracer(opts...)})
	ps := newGoChannel(t)
	msgs := consume(t, ps, "orders", opts)
	runRelay(t, st, wmbroker.New(ps),
		outboxotel.NewRelayTracer(append(slices.Clone(opts), outboxotel.WithLogger(newLogger(&logs)))...))

	ctx, request := tracer.Start(context.Background(), "request")
	bad := envelopeEvent(t, "orders", "corr-bad")
	bad.Key = "bad"
	bad.Headers[outbox.HeaderTraceparent] = "00-not-a-trace-context"
	bad.Headers[outbox.HeaderTracestate] = "vendor=1"
	good := envelopeEvent(t, "orders", "corr-good")
	write(t, ctx, st, bad, good)
	request.End()

	// The writer never overwrites a traceparent, even a malformed one.
	require.Equal(t, "00-not-a-trace-context", storedHeaders(t, st, bad.ID)[outbox.HeaderTraceparent])

	byID := map[string]received{}
	for range 2 {
		got := receive(t, msgs)
		byID[got.uuid] = got
	}
	gotBad, gotGood := byID[bad.ID.String()], byID[good.ID.String()]
	require.NotContains(t, gotBad.metadata, outbox.HeaderTraceparent)
	require.NotContains(t, gotBad.metadata, outbox.HeaderTracestate)
	require.Equal(t, "corr-bad", gotBad.correlationID)
	require.True(t, gotBad.span.IsValid(), "the consumer still traces it, in a new trace")
	require.NotEqual(t, request.SpanContext().TraceID(), gotBad.span.TraceID())
	require.Equal(t, request.SpanContext().TraceID(), gotGood.span.TraceID())

	require.Contains(t, logs.String(), "dropped malformed traceparent")
	require.Contains(t, logs.String(), bad.ID.String())

	waitSpans(t, rec, "publish orders")
	publish := spanNamed(t, rec, "publish orders")
	requireAttrs(t, publish, attribute.Int("messaging.batch.message_count", 2))
	require.NotContains(t, attrKeys(publish), attribute.Key("messaging.message.id"))
	require.Equal(t, []trace.SpanContext{spanContextOf(storedHeaders(t, st, good.ID))}, linked(publish))
}

// TestNoSpan checks that without a span in the context nothing breaks and a
// correlation ID still travels.
func TestNoSpan(t *testing.T) {
	t.Parallel()
	rec, _, opts := newTracing(t)
	st := testenv.PostgresStore(t, postgres.Config{Tracer: outboxotel.NewWriteTracer(opts...)})
	ps := newGoChannel(t)
	msgs := consume(t, ps, "orders", opts)
	runRelay(t, st, wmbroker.New(ps), outboxotel.NewRelayTracer(opts...))

	event := outbox.Event{Topic: "orders", Key: "k", EventType: "order.placed.v1", Payload: []byte(`{}`)}
	write(t, context.Background(), st, event)
	id := storedID(t, st)
	stored := storedHeaders(t, st, id)
	require.NotContains(t, stored, outbox.HeaderTraceparent)
	require.NotEmpty(t, stored[outbox.HeaderCorrelationID])

	got := receive(t, msgs)
	require.NotContains(t, got.metadata, outbox.HeaderTraceparent)
	require.Equal(t, stored[outbox.HeaderCorrelationID], got.metadata[outbox.HeaderCorrelationID])
	require.Equal(t, stored[outbox.HeaderCorrelationID], got.correlationID)
	require.True(t, got.span.IsValid())

	waitSpans(t, rec, "publish orders", "process orders")
	require.Empty(t, spanNamed(t, rec, "publish orders").Links())
	require.False(t, spanNamed(t, rec, "process orders").Parent().IsValid())
}

func storedID(t *testing.T, st *postgres.Store) (id [16]byte) {
	t.Helper()
	require.NoError(t, st.Pool().QueryRow(context.Background(), "SELECT id FROM "+st.Table()).Scan(&id))
	return id
}

func spanContextOf(headers map[string]string) trace.SpanContext {
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier(headers))
	return trace.SpanContextFromContext(ctx)
}

func countKeys(m map[string]string, name string) int {
	n := 0
	for k := range m {
		if strings.EqualFold(k, name) {
			n++
		}
	}
	return n
}

// linked returns the span contexts a span links to, without their
// remote flag, which the SDK does not keep on links.
func linked(s sdktrace.ReadOnlySpan) []trace.SpanContext {
	var out []trace.SpanContext
	for _, l := range s.Links() {
		out = append(out, l.SpanContext.WithRemote(true))
	}
	return out
}

func attrKeys(s sdktrace.ReadOnlySpan) []attribute.Key {
	var keys []attribute.Key
	for _, kv := range s.Attributes() {
		keys = append(keys, kv.Key)
	}
	return keys
}

func requireAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want ...attribute.KeyValue) {
	t.Helper()
	set := attribute.NewSet(s.Attributes()...)
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		require.True(t, ok, "span %q has no %s", s.Name(), kv.Key)
		require.Equal(t, kv.Value.Emit(), v.Emit(), "span %q attribute %s", s.Name(), kv.Key)
	}
}

// waitSpans waits until spans with the names have ended: the relay ends its
// span after the broker call returns, which may be after delivery.
func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, names ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, name := range names {
			if !slices.ContainsFunc(rec.Ended(), func(s sdktrace.ReadOnlySpan) bool { return s.Name() == name }) {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond, "spans %v", names)
}
