package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
)

// AddTx writes events into the outbox inside tx, in one round trip. They are
// published if and only if tx commits, in the order given for each key.
//
// Invalid events are rejected with an [outbox.ValidationError] before any SQL
// runs, so tx stays usable. After a successful write, relays in this process
// are woken (see store.Waker) so they publish without waiting for a poll.
func (s *Store) AddTx(ctx context.Context, tx pgx.Tx, events ...outbox.Event) (err error) {
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
	query, args, err := s.insert(evs)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	s.wake.Wake()
	return nil
}

// Queue adds the insert of events to b, for a caller that sends its own
// statements as a pgx.Batch: sent with tx.SendBatch inside the business
// transaction, the events travel with the business rows and cost no round
// trip of their own. They are published if and only if that transaction
// commits. The insert is one Exec among b's results, in the order it was
// queued; the caller checks it like the others.
//
// Events are validated now: an invalid one is rejected with an
// [outbox.ValidationError] and nothing is queued. A WriteTracer's span
// covers the preparation only, since the statement runs later. Relays in
// this process are woken now and poll fast until the transaction commits.
func (s *Store) Queue(ctx context.Context, b *pgx.Batch, events ...outbox.Event) error {
	if len(events) == 0 {
		return nil
	}
	evs, err := outbox.Prepare(ctx, s.limits, events)
	if err != nil {
		return err
	}
	if s.tracer != nil {
		ctx = s.tracer.TraceWriteStart(ctx, outbox.TraceWriteStartData{Table: s.table, Events: evs})
	}
	query, args, err := s.insert(evs)
	if s.tracer != nil {
		s.tracer.TraceWriteEnd(ctx, outbox.TraceWriteEndData{Err: err})
	}
	if err != nil {
		return err
	}
	b.Queue(query, args...)
	s.wake.Wake()
	return nil
}

// insert returns the statement that writes evs and its arguments: plain
// VALUES for one event, unnest over arrays for several (which keeps the
// call's order in seq).
func (s *Store) insert(evs []outbox.Event) (string, []any, error) {
	if len(evs) == 1 {
		e := &evs[0]
		headers, err := json.Marshal(e.Headers)
		if err != nil {
			return "", nil, err
		}
		return s.sql.insertOne, []any{[16]byte(e.ID), e.Topic, e.Key, e.AggregateType, e.AggregateID,
			e.EventType, string(e.Payload), string(headers)}, nil
	}
	ids := make([][16]byte, len(evs))
	cols := make([][]string, 7)
	for i := range cols {
		cols[i] = make([]string, len(evs))
	}
	for i, e := range evs {
		headers, err := json.Marshal(e.Headers)
		if err != nil {
			return "", nil, err
		}
		ids[i] = e.ID
		cols[0][i], cols[1][i], cols[2][i], cols[3][i] = e.Topic, e.Key, e.AggregateType, e.AggregateID
		cols[4][i], cols[5][i], cols[6][i] = e.EventType, string(e.Payload), string(headers)
	}
	return s.sql.insertMany, []any{ids, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]}, nil
}
