package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
)

// Summary is what a run did, read back from the database, the relay, the
// consumers and the metrics endpoint.
type Summary struct {
	Batches, Completed, Failed int
	// FailedBatches describes each failed batch: "id in phase: error".
	FailedBatches []string
	// EventsWritten counts this run's events by event type.
	EventsWritten map[string]int
	// Published counts this run's events marked published.
	Published int
	// Consumed counts (handler, event) pairs the inbox recorded: each
	// event's effects ran once.
	Consumed int
	// Duplicates counts deliveries the inbox acked without running the
	// handler; LostAcks the simulated crashes that caused them.
	Duplicates, LostAcks int64
	// CorrelationIDs counts the distinct correlation IDs of this run's
	// events: one per batch.
	CorrelationIDs int
	// Traces counts the traces the consumer spans belong to (one per batch:
	// each handler continues the trace of the write it consumes), and
	// ConsumerSpans the spans.
	Traces, ConsumerSpans int
	// ClaimsLeft counts the relays' claims left after shutdown.
	ClaimsLeft int
	// MetricPublished is outbox_relay_published_total as scraped.
	MetricPublished float64
	Relay           relay.Stats
}

func summarize(ctx context.Context, pool *pgxpool.Pool, cfg Config, batchIDs []string, outcomes string) (Summary, error) {
	ctx = context.WithoutCancel(ctx) // the summary is read after SIGTERM too
	s := Summary{Batches: len(batchIDs), EventsWritten: map[string]int{}}
	rows, err := pool.Query(ctx, `SELECT status, COALESCE(failed_phase, ''), COALESCE(error, ''), id FROM `+cfg.TablePrefix+`batches
		WHERE id = ANY($1) ORDER BY id`, batchIDs)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	for rows.Next() {
		var status, phase, reason, id string
		if err := rows.Scan(&status, &phase, &reason, &id); err != nil {
			return s, fmt.Errorf("summary: %w", err)
		}
		switch status {
		case StatusCompleted:
			s.Completed++
		case StatusFailed:
			s.Failed++
			s.FailedBatches = append(s.FailedBatches, fmt.Sprintf("%s in %s: %s", id, phase, reason))
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	rows, err = pool.Query(ctx, `SELECT event_type, count(*) FROM `+cfg.OutboxTable+` WHERE aggregate_id = ANY($1) GROUP BY 1`, batchIDs)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return s, fmt.Errorf("summary: %w", err)
		}
		s.EventsWritten[t] = n
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM `+cfg.OutboxTable+` WHERE aggregate_id = ANY($1) AND published_at IS NOT NULL),
		(SELECT count(DISTINCT headers->>'correlation_id') FROM `+cfg.OutboxTable+` WHERE aggregate_id = ANY($1)),
		(SELECT count(*) FROM `+cfg.InboxTable+` i JOIN `+cfg.OutboxTable+` o ON i.message_id = o.id::text WHERE o.aggregate_id = ANY($1)),
		(SELECT count(*) FROM `+migrations.ClaimsTable(cfg.OutboxTable)+`)`, batchIDs).
		Scan(&s.Published, &s.CorrelationIDs, &s.Consumed, &s.ClaimsLeft)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	return s, nil
}

func (s Summary) written() int {
	n := 0
	for _, c := range s.EventsWritten {
		n += c
	}
	return n
}

func (s Summary) print(w io.Writer, metricsURL string) {
	types := make([]string, 0, len(s.EventsWritten))
	for t, n := range s.EventsWritten {
		types = append(types, fmt.Sprintf("%s %d", t, n))
	}
	slices.Sort(types)
	fmt.Fprintf(w, "\nsummary\n")
	fmt.Fprintf(w, "  batches:        %d (%d completed, %d failed)\n", s.Batches, s.Completed, s.Failed)
	for _, f := range s.FailedBatches {
		fmt.Fprintf(w, "  failed:         %s\n", f)
	}
	fmt.Fprintf(w, "  events written: %d of %d types, each in its batch's transaction (%s)\n", s.written(), len(s.EventsWritten), strings.Join(types, ", "))
	fmt.Fprintf(w, "  published:      %d (relay: %d published, %d failed, %d parked, %d possible duplicates)\n",
		s.Published, s.Relay.Published, s.Relay.Failed, s.Relay.Parked, s.Relay.PossibleDuplicates)
	fmt.Fprintf(w, "  consumed:       %d, effects once each; %d redeliveries acked by the inbox (%d simulated lost acks)\n",
		s.Consumed, s.Duplicates, s.LostAcks)
	fmt.Fprintf(w, "  tracing:        %d traces, %d consumer spans; %d correlation IDs\n", s.Traces, s.ConsumerSpans, s.CorrelationIDs)
	fmt.Fprintf(w, "  metrics:        outbox_relay_published_total %g at %s\n", s.MetricPublished, metricsURL)
	fmt.Fprintf(w, "  claims left:    %d after shutdown\n", s.ClaimsLeft)
}

// check returns an error for every expectation the run missed.
func (s Summary) check(batches int) error {
	var errs []error
	want := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	want(s.Completed == batches-1 && s.Failed == 1, "want %d completed and 1 failed batch", batches-1)
	want(len(s.EventsWritten) == 6, "want all 6 event types, got %d", len(s.EventsWritten))
	want(s.Published == s.written(), "%d of %d events published", s.Published, s.written())
	want(s.Consumed == s.written(), "%d of %d events consumed", s.Consumed, s.written())
	want(s.Duplicates >= s.LostAcks, "%d lost acks but only %d duplicates acked", s.LostAcks, s.Duplicates)
	want(s.CorrelationIDs == batches, "want one correlation ID per batch, got %d", s.CorrelationIDs)
	want(s.Traces == batches, "want one trace per batch, got %d", s.Traces)
	want(s.MetricPublished >= float64(s.Published), "metric says %g published, want %d", s.MetricPublished, s.Published)
	want(s.ClaimsLeft == 0, "%d claims left after shutdown", s.ClaimsLeft)
	return errors.Join(errs...)
}
