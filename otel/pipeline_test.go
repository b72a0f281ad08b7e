package otel_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/testenv"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

// newTracing returns a recorder of ended spans and options that use it.
// W3C baggage is in the propagator so that the tests see it does no harm.
func newTracing(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer, []outboxotel.Option) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	return rec, tp.Tracer("test"), []outboxotel.Option{outboxotel.WithTracerProvider(tp), outboxotel.WithPropagators(prop)}
}

// received is what the consumer's handler saw of one message.
type received struct {
	uuid          string
	metadata      message.Metadata
	span          trace.SpanContext
	correlationID string
}

// consume subscribes a Watermill router with the tracing middleware to topic
// on ps and returns the messages its handler sees. The router stops at the
// end of the test.
func consume(t *testing.T, ps *gochannel.GoChannel, topic string, opts []outboxotel.Option) <-chan received {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddMiddleware(outboxwatermill.Middleware(opts...))
	out := make(chan received, 100)
	router.AddConsumerHandler("consume", topic, ps, func(msg *message.Message) error {
		out <- received{
			uuid:          msg.UUID,
			metadata:      msg.Metadata,
			span:          trace.SpanContextFromContext(msg.Context()),
			correlationID: outbox.CorrelationID(msg.Context()),
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-done:
		t.Fatalf("router: %v", err)
	}
	t.Cleanup(func() {
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
	})
	return out
}

func newGoChannel(t *testing.T) *gochannel.GoChannel {
	ps := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	t.Cleanup(func() { _ = ps.Close() })
	return ps
}

// runRelay runs a relay with short settings until the returned stop is
// called or the test ends. Failed events wait an hour for their retry, so
// each is attempted once in a test.
func runRelay(t *testing.T, st *postgres.Store, pub broker.Publisher, tracer *outboxotel.RelayTracer) (stop func()) {
	t.Helper()
	r, err := relay.New(st, pub, relay.Config{
		PollInterval:       10 * time.Millisecond,
		Lease:              5 * time.Second,
		ErrorRetryInterval: time.Hour,
		MaxBackoff:         time.Hour,
		Retention:          -1,
		ShutdownTimeout:    2 * time.Second,
		Tracer:             tracer,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// write adds events in one committed transaction.
func write(t *testing.T, ctx context.Context, st *postgres.Store, events ...outbox.Event) {
	t.Helper()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	require.NoError(t, st.AddTx(ctx, tx, events...))
	require.NoError(t, tx.Commit(ctx))
}

// storedHeaders reads an event's headers column.
func storedHeaders(t *testing.T, st *postgres.Store, id uuid.UUID) map[string]string {
	t.Helper()
	var raw string
	require.NoError(t, st.Pool().QueryRow(context.Background(),
		"SELECT headers::text FROM "+st.Table()+" WHERE id = $1", id).Scan(&raw))
	var h map[string]string
	require.NoError(t, json.Unmarshal([]byte(raw), &h))
	return h
}

func receive(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no message received")
		return received{}
	}
}

func envelopeEvent(t *testing.T, topic, correlationID string) outbox.Event {
	t.Helper()
	e, err := outbox.Envelope[map[string]string]{
		EventType:     "order.placed.v1",
		SourceService: "test",
		CorrelationID: correlationID,
		Data:          map[string]string{"order": "42"},
	}.Event(topic, "order", "42")
	require.NoError(t, err)
	return e
}

// spanNamed returns the one ended span called name.
func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q", name)
	return found[0]
}

func newLogger(buf *testenv.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
