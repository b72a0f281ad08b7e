package otel

import (
	"log/slog"

	global "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Option configures the constructors of this package. Each constructor uses
// the options that concern it and ignores the others, so one option list can
// be shared by all of them.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp          trace.TracerProvider
	mp          metric.MeterProvider
	prop        propagation.TextMapPropagator
	system      string
	logger      *slog.Logger
	createSpans bool
}

// newConfig applies opts over the defaults. The globals are read here, at
// construction, as the contrib instrumentations do.
func newConfig(opts []Option) config {
	c := config{system: semconv.MessagingSystemKafka.Value.AsString()}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = global.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = global.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = global.GetTextMapPropagator()
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

func (c config) tracer() trace.Tracer {
	return c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
}

func (c config) meter() metric.Meter {
	return c.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
}

func (c config) systemAttr() attribute.KeyValue {
	return semconv.MessagingSystemKey.String(c.system)
}

// WithTracerProvider sets the tracer provider. Defaults to the global one.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets the meter provider. Defaults to the global one.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithPropagators sets the propagator that writes the trace context into the
// headers and reads it back. Defaults to the global one; baggage travels too
// when the propagator includes propagation.Baggage.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = p })
}

// WithMessagingSystem sets the messaging.system attribute of the spans, e.g.
// "rabbitmq" for a relay that publishes to RabbitMQ. Defaults to "kafka".
func WithMessagingSystem(system string) Option {
	return optionFunc(func(c *config) { c.system = system })
}

// WithLogger sets the logger for warnings, such as a malformed stored
// traceparent that the relay drops. Defaults to slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithCreateSpans makes the [WriteTracer] start a short "create {topic}"
// producer span for each write and store its context in the events instead
// of the caller's. It gives each write its own node in the trace. Off by
// default: the caller's span is stored.
func WithCreateSpans() Option {
	return optionFunc(func(c *config) { c.createSpans = true })
}
