package sqlite

import (
	"context"
	"database/sql"

	"github.com/outboxkit/outbox"
)

// AddTx writes events into the outbox inside tx, in one multi-row INSERT.
// They are published if and only if tx commits, in the order given for each
// key.
//
// Invalid events are rejected with an [outbox.ValidationError] before any SQL
// runs, so tx stays usable; so does a failed INSERT, which writes none of the
// call's events. After a successful write, relays in this process are woken
// (see store.Waker) so they publish without waiting for a poll.
func (s *Store) AddTx(ctx context.Context, tx *sql.Tx, events ...outbox.Event) error {
	return s.ins.Add(ctx, tx, events)
}
