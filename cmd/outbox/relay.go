package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
)

var relayCommand = &command{
	name: "relay",
	summary: "run a relay that publishes the table's events to Kafka until SIGTERM or SIGINT, " +
		"with Prometheus metrics and /healthz",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		brokers := brokersFlag(fs)
		owner := fs.String("owner", "", "name of this relay in lease_owner; defaults to hostname:pid [$OUTBOX_OWNER]")
		batch := fs.Int("batch", 500, "most events claimed and published at once [$OUTBOX_BATCH]")
		poll := fs.Duration("poll", 100*time.Millisecond, "sleep between claims that found nothing [$OUTBOX_POLL]")
		lease := fs.Duration("lease", 30*time.Second, "how long a claim holds its events [$OUTBOX_LEASE]")
		maxRetries := fs.Int("max-retries", 10, "failed attempts after which an event is parked [$OUTBOX_MAX_RETRIES]")
		retention := duration(7 * 24 * time.Hour)
		fs.Var(&retention, "retention", "delete published events older than this (90m, 36h, 7d); 0 keeps them [$OUTBOX_RETENTION]")
		shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long a stop may take to finish the batch in flight [$OUTBOX_SHUTDOWN_TIMEOUT]")
		metricsAddr := fs.String("metrics-addr", ":9464", "address of /metrics and /healthz; empty disables them [$OUTBOX_METRICS_ADDR]")
		logLevel := fs.String("log-level", "info", "debug, info, warn or error [$OUTBOX_LOG_LEVEL]")
		logFormat := fs.String("log-format", "text", "text or json [$OUTBOX_LOG_FORMAT]")
		return func(ctx context.Context, inv *invocation) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", *logLevel)
			}
			opts := &slog.HandlerOptions{Level: level}
			var logger *slog.Logger
			switch *logFormat {
			case "text":
				logger = slog.New(slog.NewTextHandler(inv.stderr, opts))
			case "json":
				logger = slog.New(slog.NewJSONHandler(inv.stderr, opts))
			default:
				return usagef("--log-format %q: want text or json", *logFormat)
			}
			cfg := relay.Config{
				Owner: *owner, BatchSize: *batch, PollInterval: *poll, Lease: *lease, MaxRetries: *maxRetries,
				Retention: time.Duration(retention), ShutdownTimeout: *shutdown, Logger: logger,
			}
			if retention == 0 {
				cfg.Retention = -1
			}
			d, err := db.openStore(ctx)
			if err != nil {
				return err
			}
			defer d.Close()
			pub, err := newPublisher(*brokers)
			if err != nil {
				return err
			}
			defer pub.Close()

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
			if err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
			defer mp.Shutdown(context.WithoutCancel(ctx))
			cfg.Tracer = outboxotel.NewRelayTracer(outboxotel.WithMeterProvider(mp), outboxotel.WithLogger(logger))
			unregister, err := outboxotel.RegisterStoreMetrics(d.store, outboxotel.WithMeterProvider(mp))
			if err != nil {
				return err
			}
			defer unregister()

			r, err := relay.New(d.store, pub, cfg)
			if err != nil {
				return usageError(err.Error())
			}
			if *metricsAddr != "" {
				stop, err := serveMetrics(*metricsAddr, reg, d, logger)
				if err != nil {
					return err
				}
				// Served until the relay has stopped, so that the last
				// scrape sees the final counts and health turns false only
				// when the process goes.
				defer stop()
			}
			logger.Info("relay starting", "table", d.table, "dialect", d.dialect.Name(), "brokers", *brokers)
			return r.Run(ctx)
		}
	},
}

// serveMetrics serves /metrics and /healthz on addr. /healthz answers 200
// while the database answers a ping, 503 otherwise: the relay itself retries
// store and broker errors and never dies of them, so what an orchestrator
// can act on is a database the process cannot reach.
func serveMetrics(addr string, reg *prometheus.Registry, d *database, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
		defer cancel()
		if err := d.sql.PingContext(ctx); err != nil {
			http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	url := "http://" + strings.Replace(ln.Addr().String(), "[::]", "localhost", 1)
	logger.Info("serving metrics and health", "metrics", url+"/metrics", "healthz", url+"/healthz")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
