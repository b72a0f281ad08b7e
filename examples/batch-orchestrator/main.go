// Command batch-orchestrator is the Python Batch Orchestrator Service in Go,
// on the transactional outbox and Watermill.
//
// The orchestrator writes each of its six events (spellcheck, NLP, CJ
// assessment and AI feedback phase initiated; batch processing completed;
// batch processing failed) into the outbox in the same PostgreSQL
// transaction as the batch's state change, through Watermill's Publisher
// interface (BatchEventPublisher). A worker router runs the relay, which
// publishes the committed events to Kafka and stops gracefully on SIGTERM. A
// second router stands in for the downstream services: it consumes the
// events through the inbox (each event's effects run once, although every
// message is delivered twice here on purpose) and the tracing middleware,
// and reports each phase's result back to the orchestrator in its inbox
// transaction. Metrics are served for Prometheus.
//
// It drives a few batches through their phases, one of them failing in CJ
// assessment, and exits with a summary, non-zero if a check fails.
//
//	go run ./examples/batch-orchestrator
//
// Without configuration it uses PostgreSQL on 127.0.0.1 and an embedded
// development Kafka broker. OUTBOX_POSTGRES_URL, OUTBOX_KAFKA_BROKERS
// (comma-separated) and OUTBOX_METRICS_ADDR override them; the relay reads
// the Python service's OUTBOX_POLL_INTERVAL_SECONDS, OUTBOX_BATCH_SIZE,
// OUTBOX_MAX_RETRIES and OUTBOX_ERROR_RETRY_INTERVAL_SECONDS.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/migrations"
	outboxotel "github.com/outboxkit/outbox/otel"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

func main() {
	cfg, err := configFromEnv()
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		_, err = run(ctx, cfg, os.Stdout)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "batch-orchestrator:", err)
		os.Exit(1)
	}
}

// run starts the service, drives cfg.Batches batches, shuts down and prints
// the summary to out. It returns early, shutting down as gracefully, when
// ctx is done (SIGTERM).
func run(ctx context.Context, cfg Config, out io.Writer) (Summary, error) {
	cfg = cfg.withDefaults()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// PostgreSQL: the outbox and inbox through their migrations, and the
	// service's own tables.
	pool, err := pgxpool.New(ctx, cfg.PostgresURL)
	if err != nil {
		return Summary{}, fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return Summary{}, fmt.Errorf("postgres: %w (is PostgreSQL running? set OUTBOX_POSTGRES_URL)", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, cfg.OutboxTable); err != nil {
		return Summary{}, err
	}
	if err := outboxwatermill.MigrateInbox(ctx, db, migrations.PostgreSQL, cfg.InboxTable); err != nil {
		return Summary{}, err
	}
	repo := &BatchRepository{table: cfg.TablePrefix + "batches"}
	if err := repo.createTable(ctx, pool); err != nil {
		return Summary{}, err
	}
	outcomes := cfg.TablePrefix + "batch_outcomes"
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+outcomes+` (
		batch_id TEXT NOT NULL, event_type TEXT NOT NULL, correlation_id TEXT NOT NULL,
		recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return Summary{}, fmt.Errorf("create %s: %w", outcomes, err)
	}

	tel, err := newTelemetry(cfg.MetricsAddr)
	if err != nil {
		return Summary{}, err
	}
	defer tel.shutdown(context.WithoutCancel(ctx))
	otelOpts := tel.options()
	st, err := postgres.New(pool, postgres.Config{Table: cfg.OutboxTable, Tracer: outboxotel.NewWriteTracer(otelOpts...)})
	if err != nil {
		return Summary{}, err
	}
	unregister, err := outboxotel.RegisterStoreMetrics(st, otelOpts...)
	if err != nil {
		return Summary{}, err
	}
	defer unregister()

	// Kafka: the configured cluster, or the embedded development broker.
	brokers := cfg.KafkaBrokers
	if len(brokers) == 0 {
		dev, err := devkafka.New(devkafka.Config{})
		if err != nil {
			return Summary{}, err
		}
		defer dev.Close()
		brokers = []string{dev.Addr()}
	}
	pub, err := kafka.New(kafka.Config{Brokers: brokers})
	if err != nil {
		return Summary{}, err
	}
	defer pub.Close()

	// The worker: a router that runs the relay, started and stopped with it.
	rcfg := cfg.relayConfig()
	rcfg.Tracer, rcfg.Logger = outboxotel.NewRelayTracer(otelOpts...), log
	r, err := relay.New(st, pub, rcfg)
	if err != nil {
		return Summary{}, err
	}
	worker, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		return Summary{}, err
	}
	worker.AddPlugin(outboxwatermill.RelayPlugin(r))

	orch := &Orchestrator{pool: pool, repo: repo, events: &BatchEventPublisher{outbox: st, topicPrefix: cfg.TopicPrefix}}
	runID := uuid.NewString()[:8]
	batchIDs := make([]string, cfg.Batches)
	for i := range batchIDs {
		batchIDs[i] = fmt.Sprintf("batch-%s-%d", runID, i+1)
	}
	fail := failAt{batchID: batchIDs[min(2, len(batchIDs)-1)], phase: PhaseCJAssessment, reason: "essay scoring timed out"}
	var duplicates atomic.Int64
	inbox, err := outboxwatermill.NewPgxInbox(pool, outboxwatermill.InboxConfig{
		Table: cfg.InboxTable, OnDuplicate: func(*message.Message) { duplicates.Add(1) },
	})
	if err != nil {
		return Summary{}, err
	}
	consumers, err := newConsumers(brokers, cfg.TopicPrefix, inbox, orch, outcomes, fail, otelOpts, log)
	if err != nil {
		return Summary{}, err
	}

	stopRouters := startRouters(ctx, worker, consumers.router)
	fmt.Fprintf(out, "batch orchestrator: Kafka %v, metrics on %s\n", brokers, tel.URL)
	tracer := tel.tp.Tracer("batch-orchestrator")
	for i, id := range batchIDs {
		essays := []string{id + "-essay-1", id + "-essay-2", id + "-essay-3"}
		bctx, span := tracer.Start(outbox.WithCorrelationID(ctx, outbox.NewID().String()), "register batch")
		err := orch.StartBatch(bctx, id, essays)
		span.End()
		if ctx.Err() != nil {
			break // SIGTERM: shut down and summarize what was done
		}
		if err != nil {
			stopRouters()
			return Summary{}, err
		}
		fmt.Fprintf(out, "started %s (%d of %d)\n", id, i+1, len(batchIDs))
	}

	// Done when every batch has its outcome and every simulated lost ack
	// has been redelivered and acked by the inbox.
	settled := func() bool { return duplicates.Load() >= consumers.lostAcks.Load() }
	waitErr := waitForOutcomes(ctx, pool, outcomes, batchIDs, settled, cfg.Timeout)
	stopRouters()
	sum, err := summarize(ctx, pool, cfg, batchIDs, outcomes)
	if err != nil {
		return sum, err
	}
	sum.Relay, sum.Duplicates, sum.LostAcks = r.Stats(), duplicates.Load(), consumers.lostAcks.Load()
	sum.Traces, sum.ConsumerSpans = tel.spans.counts()
	if sum.MetricPublished, err = tel.scrape(context.WithoutCancel(ctx), "outbox_relay_published_total"); err != nil {
		return sum, err
	}
	sum.print(out, tel.URL)
	if waitErr != nil {
		return sum, waitErr
	}
	if err := sum.check(cfg.Batches); err != nil {
		return sum, err
	}
	fmt.Fprintln(out, "  checks:         ok")
	return sum, nil
}

// startRouters runs the worker and the consumers and returns the function
// that stops them: the consumers first, so that nothing is consumed after
// the relay stopped; Close on the worker returns once the relay has
// finished its batch in flight and settled its claims.
func startRouters(ctx context.Context, worker, consumers *message.Router) (stop func()) {
	done := make(chan struct{}, 2)
	for _, r := range []*message.Router{worker, consumers} {
		go func() {
			_ = r.Run(context.WithoutCancel(ctx))
			done <- struct{}{}
		}()
		<-r.Running()
	}
	return func() {
		_ = consumers.Close()
		_ = worker.Close()
		<-done
		<-done
	}
}

// waitForOutcomes waits until the monitor recorded an outcome for every
// batch and settled holds, ctx is done (SIGTERM) or timeout passes.
func waitForOutcomes(ctx context.Context, pool *pgxpool.Pool, outcomes string, batchIDs []string, settled func() bool, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(DISTINCT batch_id) FROM `+outcomes+` WHERE batch_id = ANY($1)`,
			batchIDs).Scan(&n); err != nil && ctx.Err() == nil {
			return fmt.Errorf("read outcomes: %w", err)
		}
		if n == len(batchIDs) && settled() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted with %d of %d batches done: %w", n, len(batchIDs), context.Cause(ctx))
		case <-deadline:
			return fmt.Errorf("%d of %d batches done after %v", n, len(batchIDs), timeout)
		case <-tick.C:
		}
	}
}
