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
	if len(evs) == 1 {
		e := &evs[0]
		headers, err := json.Marshal(e.Headers)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, s.sql.insertOne, [16]byte(e.ID), e.Topic, e.Key, e.AggregateType, e.AggregateID,
			e.EventType, string(e.Payload), string(headers))
		if err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
	} else {
		ids := make([][16]byte, len(evs))
		cols := make([][]string, 7)
		for i := range cols {
			cols[i] = make([]string, len(evs))
		}
		for i, e := range evs {
			headers, err := json.Marshal(e.Headers)
			if err != nil {
				return err
			}
			ids[i] = e.ID
			cols[0][i], cols[1][i], cols[2][i], cols[3][i] = e.Topic, e.Key, e.AggregateType, e.AggregateID
			cols[4][i], cols[5][i], cols[6][i] = e.EventType, string(e.Payload), string(headers)
		}
		_, err = tx.Exec(ctx, s.sql.insertMany, ids, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6])
		if err != nil {
			return fmt.Errorf("outbox: insert: %w", err)
		}
	}
	s.Wake()
	return nil
}
