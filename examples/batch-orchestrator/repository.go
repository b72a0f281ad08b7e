package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Batch statuses besides the phases.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// Batch is a batch of essays going through the phases.
type Batch struct {
	ID       string
	EssayIDs []string
	// Status is the phase the batch is in, or StatusCompleted or
	// StatusFailed.
	Status string
}

// errStale reports a phase result for a batch that is no longer in that
// phase.
var errStale = errors.New("batch is not in that phase")

// BatchRepository stores batches. Its methods take the caller's
// transaction, so the state change and the event commit together.
type BatchRepository struct {
	table string
}

func (r *BatchRepository) createTable(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+r.table+` (
		id            TEXT PRIMARY KEY,
		essay_ids     TEXT[] NOT NULL,
		status        TEXT NOT NULL,
		failed_phase  TEXT,
		error         TEXT,
		updated_at    TIMESTAMPTZ NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("create %s: %w", r.table, err)
	}
	return nil
}

// Create inserts a batch.
func (r *BatchRepository) Create(ctx context.Context, tx pgx.Tx, b Batch) error {
	_, err := tx.Exec(ctx, `INSERT INTO `+r.table+` (id, essay_ids, status) VALUES ($1, $2, $3)`, b.ID, b.EssayIDs, b.Status)
	if err != nil {
		return fmt.Errorf("create batch %s: %w", b.ID, err)
	}
	return nil
}

// Advance moves a batch from phase from to status to, and locks it until tx
// ends. It returns errStale if the batch is not in phase from.
func (r *BatchRepository) Advance(ctx context.Context, tx pgx.Tx, id string, from Phase, to string, failure string) (Batch, error) {
	b := Batch{ID: id, Status: to}
	err := tx.QueryRow(ctx, `UPDATE `+r.table+`
		SET status = $3, failed_phase = CASE WHEN $3 = 'failed' THEN $2 END, error = NULLIF($4, ''), updated_at = now()
		WHERE id = $1 AND status = $2 RETURNING essay_ids`, id, string(from), to, failure).Scan(&b.EssayIDs)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, fmt.Errorf("batch %s, phase %s: %w", id, from, errStale)
	}
	if err != nil {
		return b, fmt.Errorf("advance batch %s: %w", id, err)
	}
	return b, nil
}
