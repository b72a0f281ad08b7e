// Package storetest is the conformance suite every outbox store must pass.
// A store's tests call [Run] with a function that returns a fresh, migrated
// table wrapped in a [Harness]; the suite checks the promises of the
// store.Store contract against the real database: atomic writes, out-of-order
// commits, disjoint concurrent claims, per-key blocking, lease expiry and
// fencing, backoff, parking, release, cleanup, stats, byte-exact payloads and
// rows written by older writers.
package storetest

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// Harness gives the suite a fresh store and the adapter-specific ways to
// write into it.
type Harness struct {
	// Store is the store under test, over an empty, migrated table.
	Store store.Store
	// Begin starts a transaction in which the suite writes events.
	Begin func(ctx context.Context) (Tx, error)
	// InsertLegacy inserts a row the way the Python services' writers do: only
	// the Python services' columns, with the topic inside eventData.
	InsertLegacy func(ctx context.Context, aggregateType, aggregateID, eventType, eventKey, eventData string) error
	// AgePublished moves published_at of every published row back by d.
	AgePublished func(ctx context.Context, d time.Duration) error
	// Count counts the rows that match where, a condition both dialects
	// accept, such as "parked_at IS NOT NULL".
	Count func(ctx context.Context, where string) (int64, error)
	// Claims counts the table's claims that hold events, live or ended:
	// the rows of migrations.ClaimsTable.
	Claims func(ctx context.Context) (int64, error)
	// Held says whether a claim, live or ended, still holds the event.
	Held func(ctx context.Context, id uuid.UUID) (bool, error)
	// Row returns retry_count and last_error of one event.
	Row func(ctx context.Context, id uuid.UUID) (retryCount int, lastError string, err error)
	// Lock locks the row of one event in a transaction of its own, as a
	// transaction that updates it would, until release is called.
	Lock func(ctx context.Context, id uuid.UUID) (release func() error, err error)
	// LockWaits counts the statements on the table that wait for a lock.
	LockWaits func(ctx context.Context) (int, error)
	// OneWriter says that the database lets one transaction write at a
	// time, as SQLite does: two writing transactions are never open at once,
	// so commits come in seq order, and there are no row locks. The suite
	// then leaves out the cases that need two open writers or row locks
	// (OutOfOrderCommit, NoRangeLocks), and Lock and LockWaits may be nil.
	OneWriter bool
}

// Tx is a business transaction that writes events through the store's AddTx.
type Tx interface {
	Add(ctx context.Context, events ...outbox.Event) error
	Savepoint(ctx context.Context, name string) error
	RollbackTo(ctx context.Context, name string) error
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}
