package main

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/sqlite"
)

// shop is the quickstart's database: an orders table and the outbox, on
// PostgreSQL or MySQL. The business code is the same on both: insert the
// order and add its event in one transaction.
type shop interface {
	Name() string
	Store() store.Store
	PlaceOrder(ctx context.Context, orderID string, totalCents int, event outbox.Event, rollback bool) error
	Close()
}

// openShop opens the database named by dbName ("sqlite", "postgres",
// "mysql"), or, when it is empty, the one whose OUTBOX_ variable is set,
// else SQLite in a file of its own.
func openShop(ctx context.Context, dbName, table string) (shop, error) {
	if dbName == "" {
		switch {
		case os.Getenv("OUTBOX_POSTGRES_URL") != "":
			dbName = "postgres"
		case os.Getenv("OUTBOX_MYSQL_DSN") != "":
			dbName = "mysql"
		default:
			dbName = "sqlite"
		}
	}
	switch dbName {
	case "sqlite":
		return openSQLite(ctx, cmp.Or(os.Getenv("OUTBOX_SQLITE_PATH"), filepath.Join(os.TempDir(), "outbox-quickstart.db")), table)
	case "postgres":
		return openPostgres(ctx, cmp.Or(os.Getenv("OUTBOX_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), table)
	case "mysql":
		return openMySQL(ctx, cmp.Or(os.Getenv("OUTBOX_MYSQL_DSN"), "root@tcp(127.0.0.1:3306)/test"), table)
	}
	return nil, fmt.Errorf("unknown database %q: want sqlite, postgres or mysql", dbName)
}

type pgShop struct {
	pool *pgxpool.Pool
	st   *postgres.Store
}

func openPostgres(ctx context.Context, url, table string) (*pgShop, error) {
	pool, err := pgxpool.New(ctx, url)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: %w (is PostgreSQL running? set OUTBOX_POSTGRES_URL)", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, table); err != nil {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS quickstart_orders (
		id TEXT PRIMARY KEY, total_cents INT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		pool.Close()
		return nil, err
	}
	st, err := postgres.New(pool, postgres.Config{Table: table})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &pgShop{pool, st}, nil
}

func (s *pgShop) Name() string       { return "PostgreSQL" }
func (s *pgShop) Store() store.Store { return s.st }
func (s *pgShop) Close()             { s.pool.Close() }

func (s *pgShop) PlaceOrder(ctx context.Context, orderID string, totalCents int, event outbox.Event, rollback bool) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO quickstart_orders (id, total_cents) VALUES ($1, $2)`, orderID, totalCents); err != nil {
		return err
	}
	if err := s.st.AddTx(ctx, tx, event); err != nil {
		return err
	}
	if rollback {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

type mysqlShop struct {
	db *sql.DB
	st *mysql.Store
}

func openMySQL(ctx context.Context, dsn, table string) (*mysqlShop, error) {
	db, err := sql.Open("mysql", dsn)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("mysql: %w (is MySQL/MariaDB running? check OUTBOX_MYSQL_DSN)", err)
	}
	if err := migrations.Up(ctx, db, migrations.MySQL, table); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS quickstart_orders (
		id VARCHAR(64) PRIMARY KEY, total_cents INT NOT NULL, created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`); err != nil {
		db.Close()
		return nil, err
	}
	st, err := mysql.New(db, mysql.Config{Table: table})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &mysqlShop{db, st}, nil
}

func (s *mysqlShop) Name() string       { return "MySQL/MariaDB" }
func (s *mysqlShop) Store() store.Store { return s.st }
func (s *mysqlShop) Close()             { s.db.Close() }

func (s *mysqlShop) PlaceOrder(ctx context.Context, orderID string, totalCents int, event outbox.Event, rollback bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO quickstart_orders (id, total_cents) VALUES (?, ?)`, orderID, totalCents); err != nil {
		return err
	}
	if err := s.st.AddTx(ctx, tx, event); err != nil {
		return err
	}
	if rollback {
		return tx.Rollback()
	}
	return tx.Commit()
}

type sqliteShop struct {
	db   *sql.DB
	path string
	st   *sqlite.Store
}

func openSQLite(ctx context.Context, path, table string) (*sqliteShop, error) {
	db, err := sqlite.Open(path)
	if err != nil {
		return nil, err
	}
	if err := migrations.Up(ctx, db, migrations.SQLite, table); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS quickstart_orders (
		id TEXT PRIMARY KEY, total_cents INTEGER NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)`); err != nil {
		db.Close()
		return nil, err
	}
	st, err := sqlite.New(db, sqlite.Config{Table: table})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &sqliteShop{db, path, st}, nil
}

func (s *sqliteShop) Name() string       { return "SQLite (" + s.path + ")" }
func (s *sqliteShop) Store() store.Store { return s.st }
func (s *sqliteShop) Close()             { s.db.Close() }

func (s *sqliteShop) PlaceOrder(ctx context.Context, orderID string, totalCents int, event outbox.Event, rollback bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO quickstart_orders (id, total_cents) VALUES (?, ?)`, orderID, totalCents); err != nil {
		return err
	}
	if err := s.st.AddTx(ctx, tx, event); err != nil {
		return err
	}
	if rollback {
		return tx.Rollback()
	}
	return tx.Commit()
}
