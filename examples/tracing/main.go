// Command tracing shows one trace running from an HTTP request through the
// outbox to the consumer that handled the event, and the outbox's metrics in
// Prometheus format.
//
// An HTTP handler writes an order and its event in one PostgreSQL
// transaction under the request's span; the relay publishes the event to Kafka
// in a "publish {topic}" span linked to the stored context; a Watermill
// consumer continues the request's trace in a "process {topic}" span. The
// spans go to the OpenTelemetry stdout exporter, the trace is printed as a
// tree, and /metrics is scraped once and its outbox lines printed. It exits by
// itself.
//
// Without configuration it uses PostgreSQL on 127.0.0.1 and an embedded
// development Kafka broker; OUTBOX_POSTGRES_URL and OUTBOX_KAFKA_BROKERS point
// it at real ones.
//
//	go run ./examples/tracing
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/migrations"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

const (
	topic = "tracing.orders"
	table = "tracing_outbox"
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Tracing: spans to the stdout exporter, and to a recorder that prints
	// the tree at the end. Metrics: a Prometheus registry served on /metrics.
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(out))
	if err != nil {
		return err
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())
	registry := prometheus.NewRegistry()
	promExporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExporter))
	defer mp.Shutdown(context.Background())
	opts := []outboxotel.Option{
		outboxotel.WithTracerProvider(tp), outboxotel.WithMeterProvider(mp),
		outboxotel.WithPropagators(propagation.TraceContext{}), outboxotel.WithCreateSpans(),
	}

	// The outbox: PostgreSQL store with the write tracer, Kafka publisher.
	pool, err := pgxpool.New(ctx, cmp.Or(os.Getenv("OUTBOX_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"))
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, table); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	st, err := postgres.New(pool, postgres.Config{Table: table, Tracer: outboxotel.NewWriteTracer(opts...)})
	if err != nil {
		return err
	}
	unregister, err := outboxotel.RegisterStoreMetrics(st, opts...)
	if err != nil {
		return err
	}
	defer unregister()
	brokers := strings.Split(os.Getenv("OUTBOX_KAFKA_BROKERS"), ",")
	if brokers[0] == "" {
		dev, err := devkafka.New(devkafka.Config{})
		if err != nil {
			return err
		}
		defer dev.Close()
		brokers = []string{dev.Addr()}
	}
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer pub.Close()

	// The consumer: a Watermill router with the tracing middleware. It
	// reports the event this run writes; a topic on a long-lived broker
	// holds earlier runs' events too.
	var written sync.Map // event IDs written by placeOrder
	handled := make(chan string, 1)
	router, err := consumer(brokers, opts, &written, handled)
	if err != nil {
		return err
	}
	go func() { _ = router.Run(ctx) }()
	defer router.Close()
	<-router.Running()

	// The relay, with the relay tracer.
	r, err := relay.New(st, pub, relay.Config{Tracer: outboxotel.NewRelayTracer(opts...)})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	// The HTTP server: POST /orders writes an order event, /metrics serves
	// Prometheus.
	mux := http.NewServeMux()
	mux.Handle("POST /orders", placeOrder(st, tp.Tracer("example/http"), &written))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	resp, err := http.Post(base+"/orders", "application/json", strings.NewReader(`{"order_id":"o-1"}`))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /orders: %s: %s", resp.Status, body)
	}
	select {
	case correlation := <-handled:
		fmt.Fprintf(out, "\nconsumer handled the event, correlation ID %s\n", correlation)
	case <-ctx.Done():
		return errors.New("the consumer did not get the event within a minute")
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		return err
	}
	// Closing the router waits for the handler, so its span has ended.
	if err := router.Close(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\ntrace tree:")
	printTree(out, recorder.Ended())

	fmt.Fprintln(out, "\n/metrics (outbox lines, without histogram buckets):")
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "outbox_") && !strings.Contains(line, "_bucket{") {
			fmt.Fprintln(out, " ", line)
		}
	}
	return sc.Err()
}

// placeOrder is the HTTP handler: it writes the event under the request's
// span, which the write tracer stores with the event, and notes its ID in
// written.
func placeOrder(st *postgres.Store, tracer trace.Tracer, written *sync.Map) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, span := tracer.Start(req.Context(), "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		event, err := outbox.Envelope[map[string]string]{
			EventType: "shop.order.placed.v1", SourceService: "tracing-example", Data: map[string]string{"order_id": "o-1"},
		}.Event(topic, "order", "o-1")
		if err == nil {
			err = pgx(ctx, st, event)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		written.Store(event.ID.String(), true)
		w.WriteHeader(http.StatusAccepted)
	})
}

// pgx writes event in its own transaction; a real handler writes its
// business rows in the same one.
func pgx(ctx context.Context, st *postgres.Store, event outbox.Event) error {
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := st.AddTx(ctx, tx, event); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func consumer(brokers []string, opts []outboxotel.Option, written *sync.Map, handled chan<- string) (*message.Router, error) {
	logger := watermill.NopLogger{}
	cfg := wkafka.DefaultSaramaSubscriberConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wkafka.NewSubscriber(wkafka.SubscriberConfig{
		Brokers: brokers, Unmarshaler: wkafka.DefaultMarshaler{}, OverwriteSaramaConfig: cfg,
		ConsumerGroup: "tracing-" + outbox.NewID().String(),
	}, logger)
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return nil, err
	}
	router.AddMiddleware(outboxwatermill.Middleware(opts...))
	router.AddConsumerHandler("orders", topic, sub, func(msg *message.Message) error {
		if _, ok := written.Load(msg.UUID); !ok {
			return nil
		}
		select {
		case handled <- outbox.CorrelationID(msg.Context()):
		default:
		}
		return nil
	})
	return router, nil
}

// printTree prints the spans as trees by parent, with their links.
func printTree(out io.Writer, spans []sdktrace.ReadOnlySpan) {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	known := map[trace.SpanID]bool{}
	for _, s := range spans {
		known[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent(); p.IsValid() && known[p.SpanID()] {
			children[p.SpanID()] = append(children[p.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) }
	slices.SortFunc(roots, byStart)
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		fmt.Fprintf(out, "%s%s [%s] trace=%s span=%s %v\n", strings.Repeat("  ", depth+1), s.Name(),
			s.SpanKind(), s.SpanContext().TraceID(), s.SpanContext().SpanID(), s.EndTime().Sub(s.StartTime()).Round(time.Microsecond))
		for _, l := range s.Links() {
			fmt.Fprintf(out, "%s  linked to trace=%s span=%s\n", strings.Repeat("  ", depth+1), l.SpanContext.TraceID(), l.SpanContext.SpanID())
		}
		kids := children[s.SpanContext().SpanID()]
		slices.SortFunc(kids, byStart)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}
