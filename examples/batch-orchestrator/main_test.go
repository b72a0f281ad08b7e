package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/testenv"
)

// testConfig runs on tables of the test's own, dropped at its end, with the
// Python relay's settings except a shorter error retry interval.
func testConfig(t *testing.T) Config {
	pool := testenv.Postgres(t)
	prefix := testenv.Table("boc") + "_"
	cfg := Config{
		KafkaBrokers:       testenv.Kafka(t),
		PostgresURL:        testenv.PostgresURL(),
		OutboxTable:        prefix + "outbox",
		InboxTable:         prefix + "inbox",
		TablePrefix:        prefix,
		TopicPrefix:        prefix,
		ErrorRetryInterval: time.Second,
		Timeout:            time.Minute,
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, table := range []string{cfg.OutboxTable, cfg.OutboxTable + "_claims", cfg.InboxTable, prefix + "batches", prefix + "batch_outcomes"} {
			_, _ = pool.Exec(ctx, "DROP TABLE IF EXISTS "+table)
		}
		_, _ = pool.Exec(ctx, "DELETE FROM outbox_migrations WHERE table_name = $1", cfg.OutboxTable)
		_, _ = pool.Exec(ctx, "DELETE FROM outbox_migrations WHERE table_name = $1", cfg.InboxTable)
	})
	return cfg
}

// The demo runs end to end and its summary says what the issue asks for:
// four batches, one failed in CJ assessment, all six event types written,
// published and consumed once each despite a redelivery of every message,
// one trace and one correlation ID per batch, metrics served, no claim left.
func TestRun(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	sum, err := run(context.Background(), testConfig(t), &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)

	require.Equal(t, 4, sum.Batches)
	require.Equal(t, 3, sum.Completed)
	require.Len(t, sum.FailedBatches, 1)
	require.Contains(t, sum.FailedBatches[0], "in cj_assessment: essay scoring timed out")
	require.Equal(t, map[string]int{
		EventSpellcheckPhaseInitiated:   4,
		EventNLPPhaseInitiated:          4,
		EventCJAssessmentPhaseInitiated: 4,
		EventAIFeedbackPhaseInitiated:   3,
		EventBatchProcessingCompleted:   3,
		EventBatchProcessingFailed:      1,
	}, sum.EventsWritten)
	require.Equal(t, 19, sum.Published)
	require.Equal(t, 19, sum.Consumed)
	require.EqualValues(t, 19, sum.LostAcks)
	require.EqualValues(t, 19, sum.Duplicates)
	require.Equal(t, 4, sum.Traces)
	require.Equal(t, 4, sum.CorrelationIDs)
	require.EqualValues(t, 19, sum.MetricPublished)
	require.Zero(t, sum.ClaimsLeft)
	for _, line := range []string{
		"batches:        4 (3 completed, 1 failed)",
		"events written: 19 of 6 types",
		"consumed:       19, effects once each; 19 redeliveries acked by the inbox",
		"metrics:        outbox_relay_published_total 19 at http://127.0.0.1:",
		"claims left:    0 after shutdown",
		"checks:         ok",
	} {
		require.Contains(t, out.String(), line)
	}
}

// cancelOn cancels when a line containing marker is written: the test's
// SIGTERM (main cancels run's context on SIGTERM).
type cancelOn struct {
	strings.Builder
	mu     sync.Mutex
	marker string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return c.Builder.Write(p)
}

// Cancelled midway, as by SIGTERM, run shuts down gracefully: it returns
// promptly with a summary, and the relay settled every claim.
func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelOn{marker: "started", cancel: cancel}
	start := time.Now()
	sum, err := run(ctx, testConfig(t), out)
	t.Log("\n" + out.String())
	require.ErrorContains(t, err, "interrupted")
	require.Less(t, time.Since(start), 30*time.Second)
	require.Zero(t, sum.ClaimsLeft)
	require.Contains(t, out.String(), "summary")
}

// The relay settings keep the Python relay's names and defaults.
func TestConfigFromEnv(t *testing.T) {
	cfg, err := configFromEnv()
	require.NoError(t, err)
	rc := cfg.withDefaults().relayConfig()
	require.Equal(t, 5*time.Second, rc.PollInterval)
	require.Equal(t, 100, rc.BatchSize)
	require.Equal(t, 5, rc.MaxRetries)
	require.Equal(t, 30*time.Second, rc.ErrorRetryInterval)

	t.Setenv("OUTBOX_POLL_INTERVAL_SECONDS", "0.25")
	t.Setenv("OUTBOX_BATCH_SIZE", "50")
	t.Setenv("OUTBOX_MAX_RETRIES", "3")
	t.Setenv("OUTBOX_ERROR_RETRY_INTERVAL_SECONDS", "2")
	t.Setenv("OUTBOX_KAFKA_BROKERS", "k1:9092,k2:9092")
	cfg, err = configFromEnv()
	require.NoError(t, err)
	rc = cfg.withDefaults().relayConfig()
	require.Equal(t, 250*time.Millisecond, rc.PollInterval)
	require.Equal(t, 50, rc.BatchSize)
	require.Equal(t, 3, rc.MaxRetries)
	require.Equal(t, 2*time.Second, rc.ErrorRetryInterval)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, cfg.KafkaBrokers)

	t.Setenv("OUTBOX_BATCH_SIZE", "many")
	_, err = configFromEnv()
	require.ErrorContains(t, err, "OUTBOX_BATCH_SIZE")
}
