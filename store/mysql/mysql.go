// Package mysql is the MySQL/MariaDB store of the outbox, over database/sql
// and github.com/go-sql-driver/mysql. It supports MySQL 8.0.19+ and MariaDB
// 10.6+ (both have SKIP LOCKED and enforced CHECK constraints).
//
// Services write events with [Store.AddTx] inside their own *sql.Tx; a relay
// uses the same [Store] as its [store.Store]. Create the table with package
// migrations (dialect migrations.MySQL).
//
// The dialect is fixed by the driver: [New] accepts only a *sql.DB whose
// driver is go-sql-driver/mysql (sql.Open("mysql", dsn) or
// sql.OpenDB(mysql.NewConnector(cfg))) and returns an error for any other.
// The store depends on no DSN option: it reads times as epoch microseconds,
// so parseTime and loc do not matter. Recommended: interpolateParams=true,
// which makes each statement one round trip instead of prepare + execute,
// and a UTC session time zone, because TIMESTAMP arithmetic on NOW(6) runs
// in the session's zone and a zone with daylight saving time shifts leases
// and backoff by an hour twice a year.
//
// Every statement that changes rows (claim, mark, failure, release, cleanup,
// the operator's retry and skip) runs in a short transaction at READ
// COMMITTED, set per transaction, where InnoDB takes no gap locks, and those
// given the IDs of their rows find them by primary key: at MySQL's default
// REPEATABLE READ their locking reads took next-key locks, which made
// business transactions that insert events wait, and deadlock with them.
//
// A claim writes one row into the table's claims table (migration 4) and
// locks no event: it reads the claims, then a bounded window of pending rows
// in one consistent, non-locking read, drops the rows whose key a live claim
// holds, reads the rows it takes by primary key and records its claim
// (docs/claim.md). Claims are serialized between relays with GET_LOCK on the
// claim's connection, taken before the transaction starts and released after
// it commits, so every claimer sees the claims of the one before: that is
// what keeps per-key order with several relays. Marking, failing and
// releasing lock the claim's row and settle only the events it still holds.
package mysql

import (
	"cmp"
	"database/sql"
	"fmt"
	"hash/fnv"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/sqlwrite"
	"github.com/outboxkit/outbox/internal/wakeup"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
)

// Config configures a [Store]. The zero value means the defaults.
type Config struct {
	// Table is the outbox table, optionally qualified with its database
	// ("db.table"). Defaults to "event_outbox".
	Table string
	// Limits bound the events AddTx accepts. Defaults to outbox.Limits{}.
	Limits outbox.Limits
	// Tracer traces writes (see package otel). Defaults to none.
	Tracer outbox.WriteTracer
}

// Store is the MySQL/MariaDB outbox store. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	table string
	ins   *sqlwrite.Inserter
	// lockName is the GET_LOCK name that serializes claims on the table.
	lockName string
	sql      statements
	wake     wakeup.Broadcaster
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Deleter = (*Store)(nil)
	_ store.Waker   = (*Store)(nil)
)

// New returns a store over db, which must use the go-sql-driver/mysql
// driver. The caller keeps ownership of db.
func New(db *sql.DB, cfg Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("mysql: nil db")
	}
	if _, ok := db.Driver().(*gomysql.MySQLDriver); !ok {
		return nil, fmt.Errorf("mysql: db uses driver %T, want go-sql-driver/mysql", db.Driver())
	}
	table := cmp.Or(cfg.Table, migrations.DefaultTable)
	if err := migrations.ValidateTable(table); err != nil {
		return nil, err
	}
	// Lock names are limited to 64 characters and global to the server;
	// tables of the same name in two databases share a lock, which costs
	// nothing but a little waiting.
	h := fnv.New64a()
	h.Write([]byte(table))
	s := &Store{
		db:       db,
		table:    table,
		lockName: fmt.Sprintf("outbox_claim_%016x", h.Sum64()),
		sql:      newStatements(table),
	}
	// A prepared statement takes at most 65,535 bind parameters.
	s.ins = &sqlwrite.Inserter{Table: table, Limits: cfg.Limits, Tracer: cfg.Tracer, MaxParams: 65535, Wake: s.wake.Wake}
	return s, nil
}

// Table returns the name of the outbox table.
func (s *Store) Table() string { return s.table }

// DB returns the database the store was created with.
func (s *Store) DB() *sql.DB { return s.db }

// Subscribe implements store.Waker: a relay in this process is woken after
// AddTx wrote events.
func (s *Store) Subscribe() (<-chan struct{}, func()) { return s.wake.Subscribe() }
