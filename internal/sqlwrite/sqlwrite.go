// Package sqlwrite is the write path of the database/sql stores (MySQL and
// SQLite): validation, tracing, and one multi-row INSERT per call.
package sqlwrite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/outboxkit/outbox"
)

// row is one row of the multi-row INSERT, with params bind parameters.
const (
	row    = `(?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?)`
	params = 8
)

// Inserter writes events into one outbox table.
type Inserter struct {
	Table  string
	Limits outbox.Limits
	Tracer outbox.WriteTracer
	// MaxParams is the most bind parameters one statement may carry.
	MaxParams int
	// Wake is called after a successful write.
	Wake func()
}

// Add validates events and writes them inside tx in one multi-row INSERT,
// or, past MaxParams, in several under a savepoint, so that a failure
// writes none of them either way. Invalid events are rejected with an
// [outbox.ValidationError] before any SQL runs.
func (in *Inserter) Add(ctx context.Context, tx *sql.Tx, events []outbox.Event) (err error) {
	if len(events) == 0 {
		return nil
	}
	evs, err := outbox.Prepare(ctx, in.Limits, events)
	if err != nil {
		return err
	}
	if in.Tracer != nil {
		ctx = in.Tracer.TraceWriteStart(ctx, outbox.TraceWriteStartData{Table: in.Table, Events: evs})
		defer func() { in.Tracer.TraceWriteEnd(ctx, outbox.TraceWriteEndData{Err: err}) }()
	}
	args := make([]any, 0, len(evs)*params)
	for _, e := range evs {
		headers, err := json.Marshal(e.Headers)
		if err != nil {
			return err
		}
		args = append(args, e.ID.String(), e.Topic, e.Key, e.AggregateType, e.AggregateID, e.EventType,
			string(e.Payload), string(headers))
	}
	if len(args) <= in.MaxParams {
		if _, err := tx.ExecContext(ctx, in.insertSQL(len(evs)), args...); err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
	} else if err := in.insertChunks(ctx, tx, args); err != nil {
		return err
	}
	in.Wake()
	return nil
}

// insertChunks writes a call too large for one statement in several, under
// a savepoint so that a failure writes none of the call's events, as one
// statement would.
func (in *Inserter) insertChunks(ctx context.Context, tx *sql.Tx, args []any) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT outbox_add"); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	for len(args) > 0 {
		n := min(len(args), in.MaxParams/params*params)
		if _, err := tx.ExecContext(ctx, in.insertSQL(n/params), args[:n]...); err != nil {
			if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT outbox_add"); rerr != nil {
				return fmt.Errorf("outbox: insert: %w (rollback to savepoint: %v)", err, rerr)
			}
			return fmt.Errorf("outbox: insert: %w", err)
		}
		args = args[n:]
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT outbox_add"); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

func (in *Inserter) insertSQL(rows int) string {
	return `INSERT INTO ` + in.Table + ` (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers) VALUES ` +
		Placeholders(row, rows)
}

// Placeholders returns n copies of item, comma-separated.
func Placeholders(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+", ", n), ", ")
}
