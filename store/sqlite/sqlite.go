// Package sqlite is the SQLite store of the outbox, over database/sql and
// modernc.org/sqlite: pure Go, so no cgo and cross-compilation keeps working.
// It is the embedded default, for services with no database server: a
// single-node service, an edge or desktop agent, a CLI, or the tests of a
// service that want a real outbox.
//
// Services write events with [Store.AddTx] inside their own *sql.Tx; a relay
// uses the same [Store] as its [store.Store]. Create the table with package
// migrations (dialect migrations.SQLite).
//
// SQLite has one writer at a time. Open the database with [Open], which sets
// what concurrent use needs: write-ahead logging (readers never wait for the
// writer), a busy timeout (a writer waits for the lock instead of failing
// with "database is locked"), and BEGIN IMMEDIATE for every transaction (a
// transaction takes the write lock when it begins, not at its first write,
// where a snapshot that another writer moved past would fail at once
// whatever the timeout). It also keeps one connection: SQLite's lock is not
// fair, and writers of one process that poll it can starve past any busy
// timeout, so they queue in database/sql instead. A goroutine that holds a
// transaction must therefore use it, not the *sql.DB, until it ends.
// Claims take the same lock, so they are serialized
// between relays, in this process or another one on the same file.
//
// What does not hold: a database on a network filesystem (its locks are not
// reliable), and many processes writing at high rates (they queue for one
// lock; use PostgreSQL or MySQL).
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"

	"modernc.org/sqlite"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/sqlwrite"
	"github.com/outboxkit/outbox/internal/wakeup"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
)

// Config configures a [Store]. The zero value means the defaults.
type Config struct {
	// Table is the outbox table. Defaults to "event_outbox".
	Table string
	// Limits bound the events AddTx accepts. Defaults to outbox.Limits{}.
	Limits outbox.Limits
	// Tracer traces writes (see package otel). Defaults to none.
	Tracer outbox.WriteTracer
}

// Store is the SQLite outbox store. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	table  string
	claims string
	ins    *sqlwrite.Inserter
	wake   wakeup.Broadcaster
}

var _ store.Store = (*Store)(nil)
var _ store.Waker = (*Store)(nil)

// DefaultBusyTimeout is how long [Open]'s connections wait for the write
// lock, in milliseconds.
const DefaultBusyTimeout = 10_000

// Open opens the SQLite database in file path (created if missing) for
// the outbox and the business code that writes into it: write-ahead
// logging, a busy timeout of DefaultBusyTimeout, BEGIN IMMEDIATE for every
// transaction, and one connection (see the package doc). Close the *sql.DB
// when done.
func Open(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", DefaultBusyTimeout))
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// SQLite lets one transaction write at a time, and its lock is not
	// fair: writers that poll it can starve past any busy timeout. With one
	// connection, this process's writers queue in database/sql instead.
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// New returns a store over db, which must use the modernc.org/sqlite driver
// (see [Open]). The caller keeps ownership of db.
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("sqlite: nil db")
	}
	if _, ok := db.Driver().(*sqlite.Driver); !ok {
		return nil, fmt.Errorf("sqlite: db uses driver %T, want modernc.org/sqlite (sqlite.Open)", db.Driver())
	}
	table := cmp.Or(cfg.Table, migrations.DefaultTable)
	if err := migrations.ValidateTable(table); err != nil {
		return nil, err
	}
	if strings.Contains(table, ".") {
		return nil, fmt.Errorf("sqlite: table %q: an attached database's tables are not supported", table)
	}
	s := &Store{db: db, table: table, claims: migrations.ClaimsTable(table)}
	// SQLite takes at most 32,766 bind parameters in a statement.
	s.ins = &sqlwrite.Inserter{Table: table, Limits: cfg.Limits, Tracer: cfg.Tracer, MaxParams: 32766, Wake: s.wake.Wake}
	return s, nil
}

// Table returns the name of the outbox table.
func (s *Store) Table() string { return s.table }

// DB returns the database the store was created with.
func (s *Store) DB() *sql.DB { return s.db }

// Subscribe implements store.Waker: a relay in this process is woken after
// AddTx wrote events.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.wake.Subscribe() }

// now is the database clock in microseconds since the epoch, the unit of
// every time column.
const now = `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`

// inTx runs fn in a transaction (BEGIN IMMEDIATE with [Open]'s database)
// and commits it.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
