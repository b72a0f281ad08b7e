package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Orchestrator drives batches through their phases: every state change and
// the event announcing it are written in one transaction.
type Orchestrator struct {
	pool   *pgxpool.Pool
	repo   *BatchRepository
	events *BatchEventPublisher
}

// StartBatch registers a batch and initiates its first phase.
func (o *Orchestrator) StartBatch(ctx context.Context, id string, essayIDs []string) error {
	tx, err := o.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("start batch %s: %w", id, err)
	}
	defer tx.Rollback(ctx)
	b := Batch{ID: id, EssayIDs: essayIDs, Status: string(PhaseSpellcheck)}
	if err := o.repo.Create(ctx, tx, b); err != nil {
		return err
	}
	if err := o.events.PublishSpellcheckPhaseInitiated(ctx, tx, b); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// PhaseCompleted records the result of a batch's phase inside tx: on
// failure the batch fails, else it moves to the next phase, or completes
// after the last one; the matching event is written in tx too.
func (o *Orchestrator) PhaseCompleted(ctx context.Context, tx pgx.Tx, id string, phase Phase, failure string) error {
	next := phase.next()
	switch {
	case failure != "":
		b, err := o.repo.Advance(ctx, tx, id, phase, StatusFailed, failure)
		if err != nil {
			return err
		}
		return o.events.PublishBatchProcessingFailed(ctx, tx, b, phase, failure)
	case next == "":
		b, err := o.repo.Advance(ctx, tx, id, phase, StatusCompleted, "")
		if err != nil {
			return err
		}
		return o.events.PublishBatchProcessingCompleted(ctx, tx, b)
	}
	b, err := o.repo.Advance(ctx, tx, id, phase, string(next), "")
	if err != nil {
		return err
	}
	switch next {
	case PhaseNLP:
		return o.events.PublishNLPPhaseInitiated(ctx, tx, b)
	case PhaseCJAssessment:
		return o.events.PublishCJAssessmentPhaseInitiated(ctx, tx, b)
	default:
		return o.events.PublishAIFeedbackPhaseInitiated(ctx, tx, b)
	}
}
