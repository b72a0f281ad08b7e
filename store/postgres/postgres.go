// Package postgres is the PostgreSQL store of the outbox, over pgx/v5.
//
// Services write events with [Store.AddTx] inside their own pgx transaction;
// a relay uses the same [Store] as its [store.Store]. Create the table with
// package migrations (dialect migrations.PostgreSQL).
//
// Claims are serialized between relays with a transaction-level advisory lock
// taken in its own statement before the claim's snapshot, so every claimer
// sees the claims of the one before: that is what keeps per-key order with
// several relays. The claim, the lock and its commit travel in one round trip
// (a pipelined batch in one implicit transaction). A claim writes one row
// into the table's claims table (migration 4) and locks no event; the mark is
// the only write per event (docs/claim.md).
package postgres

import (
	"cmp"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/wakeup"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
)

// Config configures a [Store]. The zero value means the defaults.
type Config struct {
	// Table is the outbox table, optionally schema-qualified. Defaults to
	// "event_outbox".
	Table string
	// Limits bound the events AddTx accepts. Defaults to outbox.Limits{}.
	Limits outbox.Limits
	// Tracer traces writes (see package otel). Defaults to none.
	Tracer outbox.WriteTracer
	// Notify makes AddTx send a PostgreSQL NOTIFY with each write (in the
	// same statement) and relays subscribed through this store LISTEN for
	// it, so a relay in another process publishes without waiting for its
	// poll. Writers and relays must agree on it. Off by default: NOTIFY
	// takes a lock at commit that serializes the commits of all writers of
	// the database. Relays in the writers' process are woken without it.
	Notify bool
}

// Store is the PostgreSQL outbox store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	table    string
	limits   outbox.Limits
	tracer   outbox.WriteTracer
	lockKey  int64
	sql      statements
	wake     wakeup.Broadcaster
	listener listener
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Deleter = (*Store)(nil)
	_ store.Waker   = (*Store)(nil)
)

// New returns a store over pool. The caller keeps ownership of pool.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, fmt.Errorf("postgres: nil pool")
	}
	table := cmp.Or(cfg.Table, migrations.DefaultTable)
	if err := migrations.ValidateTable(table); err != nil {
		return nil, err
	}
	h := fnv.New64a()
	h.Write([]byte("outbox claim " + table))
	s := &Store{
		pool:    pool,
		table:   table,
		limits:  cfg.Limits,
		tracer:  cfg.Tracer,
		lockKey: int64(h.Sum64()),
		sql:     newStatements(table, cfg.Notify),
	}
	if cfg.Notify {
		s.listener.channel = channel(table)
	}
	return s, nil
}

// Table returns the name of the outbox table.
func (s *Store) Table() string { return s.table }

// Pool returns the pool the store was created with.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }
