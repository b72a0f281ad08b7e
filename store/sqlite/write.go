package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/outboxkit/outbox"
)

// insertRow is one row of the multi-row INSERT; insertParams is its number
// of bind parameters, and maxInsertRows keeps a statement under SQLite's
// 32,766 of them.
const (
	insertRow     = `(?, ?, NULLIF(?, ''), ?, ?, ?, ?, ?)`
	insertParams  = 8
	maxInsertRows = 32766 / insertParams
)

// AddTx writes events into the outbox inside tx, in one multi-row INSERT.
// They are published if and only if tx commits, in the order given for each
// key.
//
// Invalid events are rejected with an [outbox.ValidationError] before any SQL
// runs, so tx stays usable; so does a failed INSERT, which writes none of the
// call's events. After a successful write, relays in this process are woken
// (see store.Waker) so they publish without waiting for a poll.
func (s *Store) AddTx(ctx context.Context, tx *sql.Tx, events ...outbox.Event) (err error) {
	if len(events) == 0 {
		return nil
	}
	evs, err := outbox.Prepare(ctx, s.limits, events)
	if err != nil {
		return err
	}
	if s.tracer != nil {
		ctx = s.tracer.TraceWriteStart(ctx, outbox.TraceWriteStartData{Table: s.table, Events: evs})
		defer func() { s.tracer.TraceWriteEnd(ctx, outbox.TraceWriteEndData{Err: err}) }()
	}
	args := make([]any, 0, len(evs)*insertParams)
	for _, e := range evs {
		headers, err := json.Marshal(e.Headers)
		if err != nil {
			return err
		}
		args = append(args, e.ID.String(), e.Topic, e.Key, e.AggregateType, e.AggregateID, e.EventType,
			string(e.Payload), string(headers))
	}
	if len(evs) <= maxInsertRows {
		if _, err := tx.ExecContext(ctx, s.insertSQL(len(evs)), args...); err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
	} else if err := s.insertChunks(ctx, tx, args); err != nil {
		return err
	}
	s.wake.Wake()
	return nil
}

// insertChunks writes a call too large for one statement in several, under
// a savepoint so that a failure writes none of the call's events, as one
// statement would.
func (s *Store) insertChunks(ctx context.Context, tx *sql.Tx, args []any) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT outbox_add"); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	for len(args) > 0 {
		n := min(len(args), maxInsertRows*insertParams)
		if _, err := tx.ExecContext(ctx, s.insertSQL(n/insertParams), args[:n]...); err != nil {
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

func (s *Store) insertSQL(rows int) string {
	return `INSERT INTO ` + s.table + ` (id, topic, event_key, aggregate_type, aggregate_id, event_type, event_data, headers) VALUES ` +
		placeholders(insertRow, rows)
}

// placeholders returns n copies of item, comma-separated.
func placeholders(item string, n int) string {
	return strings.TrimSuffix(strings.Repeat(item+", ", n), ", ")
}
