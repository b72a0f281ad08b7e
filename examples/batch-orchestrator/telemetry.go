package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	outboxotel "github.com/outboxkit/outbox/otel"
)

// Telemetry holds the service's meter and tracer providers and serves the
// metrics for Prometheus on /metrics. The demo keeps its spans in memory to
// report how many traces they formed; a service would export them.
type Telemetry struct {
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
	spans  *spanCounter
	server *http.Server
	// URL is where the metrics are served.
	URL string
}

func newTelemetry(addr string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t := &Telemetry{
		mp:     sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)),
		spans:  &spanCounter{traces: map[trace.TraceID]int{}},
		server: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		URL:    "http://" + ln.Addr().String() + "/metrics",
	}
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.spans))
	go t.server.Serve(ln)
	return t, nil
}

// options are package otel's options for this service's providers.
func (t *Telemetry) options() []outboxotel.Option {
	return []outboxotel.Option{
		outboxotel.WithTracerProvider(t.tp),
		outboxotel.WithMeterProvider(t.mp),
		outboxotel.WithPropagators(propagation.TraceContext{}),
	}
}

// scrape reads the metrics endpoint and returns the sum of a metric's
// samples, 0 if it has none (a counter that never counted).
func (t *Telemetry) scrape(ctx context.Context, metric string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scrape: %w", err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if name, rest, ok := strings.Cut(line, "{"); ok && name == metric {
			fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
			if len(fields) > 0 {
				v, err := strconv.ParseFloat(fields[0], 64)
				if err == nil {
					sum += v
				}
			}
		}
	}
	return sum, nil
}

func (t *Telemetry) shutdown(ctx context.Context) error {
	return errors.Join(t.server.Shutdown(ctx), t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
}

// spanCounter counts the consumer spans of each trace.
type spanCounter struct {
	mu     sync.Mutex
	traces map[trace.TraceID]int
}

func (*spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *spanCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	if s.SpanKind() == trace.SpanKindConsumer {
		c.mu.Lock()
		c.traces[s.SpanContext().TraceID()]++
		c.mu.Unlock()
	}
}
func (*spanCounter) Shutdown(context.Context) error   { return nil }
func (*spanCounter) ForceFlush(context.Context) error { return nil }

// counts returns the number of traces and of consumer spans.
func (c *spanCounter) counts() (traces, spans int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.traces {
		spans += n
	}
	return len(c.traces), spans
}
