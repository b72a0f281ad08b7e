// Package otel carries OpenTelemetry trace context and metrics through the
// outbox: from the transaction that writes an event, through the table and the
// relay, into the message headers and on to the consumer, so that one trace
// runs request → write → relay → consumer. Import it as outboxotel.
//
// It implements the core's hook interfaces, so stores and the relay import no
// OpenTelemetry:
//
//   - [WriteTracer] goes into a store's Config.Tracer. It stores the W3C trace
//     context of the writing transaction in each event's headers.
//   - [RelayTracer] goes into relay.Config.Tracer. It records a "publish
//     {topic}" span per batch and topic, linked to each event's stored
//     context, and the relay's metrics. The headers keep carrying the stored
//     context, so the consumer continues the writer's trace.
//   - [ConsumeTracer] continues the trace on the consumer side in a "process
//     {topic}" span and puts the correlation ID into the handler's context;
//     contrib/watermill's Middleware wraps it for Watermill routers.
//   - [RegisterStoreMetrics] reports a table's backlog as gauges.
//
// Usage:
//
//	st, _ := postgres.New(pool, postgres.Config{Tracer: outboxotel.NewWriteTracer()})
//	r, _ := relay.New(st, pub, relay.Config{Tracer: outboxotel.NewRelayTracer()})
//	unregister, _ := outboxotel.RegisterStoreMetrics(st)
//	defer unregister()
//	router.AddMiddleware(outboxwatermill.Middleware()) // contrib/watermill
//
// Following the OpenTelemetry contrib rules, everything takes
// [WithTracerProvider], [WithMeterProvider] and [WithPropagators] and defaults
// to the global provider or propagator at the time of construction; the
// package never sets globals. Spans and attributes follow the messaging
// semantic conventions v1.43.0 (go.opentelemetry.io/otel/semconv/v1.43.0).
//
// Metrics all have the prefix "outbox." and no per-event attribute: the
// relay's carry the topic (messaging.destination.name), the table's the
// table name (outbox.table):
//
//	outbox.relay.published           counter    {event}  accepted by the broker and marked
//	outbox.relay.failed              counter    {event}  failed attempts scheduled for a retry
//	outbox.relay.released            counter    {event}  put back without counting an attempt
//	outbox.relay.parked              counter    {event}  given up (permanent error or attempts used up)
//	outbox.relay.possible_duplicates counter    {event}  published but maybe published before
//	outbox.relay.publish.duration    histogram  s        one broker call for a batch of a topic
//	outbox.relay.batch.size          histogram  {event}  events of a topic in a claimed batch
//	outbox.relay.lag                 histogram  s        created_at → publish, by the database clock
//	outbox.table.pending             gauge      {event}  pending events (RegisterStoreMetrics)
//	outbox.table.oldest_pending_age  gauge      s        age of the oldest pending event
//	outbox.table.parked              gauge      {event}  parked events
package otel

// ScopeName is the instrumentation scope name of the package's tracers and
// meters.
const ScopeName = "github.com/outboxkit/outbox/otel"
