package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/sync/errgroup"

	"github.com/outboxkit/outbox/broker/kafka"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
)

var relayCommand = &command{
	name: "relay",
	summary: "run a relay that publishes the table's events to Kafka until SIGTERM or SIGINT, " +
		"with Prometheus metrics, /healthz and /readyz; waits for the database and the broker",
	setup: func(fs *flag.FlagSet) func(context.Context, *invocation) error {
		db := dbFlags(fs)
		brokers := brokersFlag(fs)
		owner := fs.String("owner", "", "name of this relay in its claims; defaults to hostname:pid [$OUTBOX_OWNER]")
		batch := fs.Int("batch", 500, "most events claimed and published at once [$OUTBOX_BATCH]")
		poll := fs.Duration("poll", 100*time.Millisecond, "sleep between claims that found nothing [$OUTBOX_POLL]")
		lease := fs.Duration("lease", 30*time.Second, "how long a claim holds its events [$OUTBOX_LEASE]")
		maxRetries := fs.Int("max-retries", 10, "failed attempts after which an event is parked [$OUTBOX_MAX_RETRIES]")
		retention := duration(7 * 24 * time.Hour)
		fs.Var(&retention, "retention", "delete published events older than this (90m, 36h, 7d); 0 keeps them [$OUTBOX_RETENTION]")
		deletePublished := fs.Bool("delete-published", false, "publish-and-delete: delete each event once the broker accepted it, keeping no record of published events (see README) [$OUTBOX_DELETE_PUBLISHED]")
		shutdown := fs.Duration("shutdown-timeout", 10*time.Second, "how long a stop may take to finish the batch in flight [$OUTBOX_SHUTDOWN_TIMEOUT]")
		metricsAddr := fs.String("metrics-addr", ":9464", "address of /metrics, /healthz and /readyz; empty disables them [$OUTBOX_METRICS_ADDR]")
		logLevel := fs.String("log-level", "info", "debug, info, warn or error [$OUTBOX_LOG_LEVEL]")
		logFormat := fs.String("log-format", "text", "text or json [$OUTBOX_LOG_FORMAT]")
		return func(ctx context.Context, inv *invocation) error {
			logger, err := newLogger(inv.stderr, *logLevel, *logFormat)
			if err != nil {
				return err
			}
			routeOTelLogs(logger)
			db.logger = logger
			cfg := relay.Config{
				Owner: *owner, BatchSize: *batch, PollInterval: *poll, Lease: *lease, MaxRetries: *maxRetries,
				Retention: time.Duration(retention), ShutdownTimeout: *shutdown, Logger: logger,
			}
			switch {
			case *deletePublished:
				cfg.Retention = relay.DeleteOnPublish
			case retention == 0:
				cfg.Retention = relay.KeepForever
			}

			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
			if err != nil {
				return fmt.Errorf("metrics: %w", err)
			}
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
			defer mp.Shutdown(context.WithoutCancel(ctx))
			ready := newReadiness(depDatabase, depBroker)
			if *metricsAddr != "" {
				stop, err := serveHTTP(*metricsAddr, reg, ready, logger)
				if err != nil {
					return err
				}
				// Served until the relay has stopped, so that the last
				// scrape sees the final counts.
				defer stop()
			}
			b := readBuild()
			logger.Info("relay starting", "version", b.version, "revision", b.revision, "table", *db.table, "brokers", *brokers)

			d, pub, err := connect(ctx, db, *brokers, ready, logger)
			if err != nil {
				return err
			}
			if d == nil {
				logger.Info("relay stopped before it connected")
				return nil
			}
			defer d.Close()
			defer pub.Close()

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
			return r.Run(ctx)
		}
	},
}

// The dependencies that /readyz reports.
const (
	depDatabase = "database"
	depBroker   = "broker"
)

// connect opens the database and the publisher, each retried with backoff
// until it succeeds, so that a relay started before them, or during a
// restart, waits instead of exiting. Each failure is logged with its reason
// and shown by /readyz; once connected, /readyz probes them. It returns
// nothing and no error when ctx is done first, and stops at a usage error.
func connect(ctx context.Context, db dbOptions, brokers string, ready *readiness, logger *slog.Logger) (*database, *kafka.Publisher, error) {
	var d *database
	var pub *kafka.Publisher
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		d, err = retryConnect(gctx, depDatabase, ready, logger, func() (*database, error) { return db.openStore(gctx) })
		if err == nil {
			ready.connected(depDatabase, d.ping)
		}
		return err
	})
	g.Go(func() (err error) {
		// The publisher connects on first use: the broker is connected once
		// it answers a ping.
		pub, err = retryConnect(gctx, depBroker, ready, logger, func() (*kafka.Publisher, error) {
			p, err := newPublisher(brokers)
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(gctx, probeTimeout)
			defer cancel()
			if err := p.Ping(ctx); err != nil {
				p.Close()
				return nil, err
			}
			return p, nil
		})
		if err == nil {
			ready.connected(depBroker, pub.Ping)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		if d != nil {
			d.Close()
		}
		if pub != nil {
			_ = pub.Close()
		}
		if ctx.Err() != nil {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	return d, pub, nil
}

// retryConnect calls open until it succeeds, ctx is done, or it returns a
// usage error. It waits 0.5s after the first failure, doubling up to 5s.
func retryConnect[T any](ctx context.Context, name string, ready *readiness, logger *slog.Logger, open func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.Multiplier, b.MaxInterval, b.RandomizationFactor = 500*time.Millisecond, 2, 5*time.Second, 0.2
	return backoff.Retry(ctx, func() (T, error) {
		v, err := open()
		if err == nil {
			logger.Info(name + " connected")
			return v, nil
		}
		if ue := usageError(""); errors.As(err, &ue) {
			return v, backoff.Permanent(err)
		}
		ready.failed(name, err)
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, next time.Duration) {
		logger.Warn(name+" unreachable; retrying", "err", err, "retry_in", next.Round(time.Millisecond))
	}))
}
