package testenv

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/storetest"
)

// PostgresHarness returns a conformance harness over a fresh PostgreSQL table.
func PostgresHarness(t *testing.T) storetest.Harness {
	st := PostgresStore(t, postgres.Config{})
	pool, table := st.Pool(), st.Table()
	return storetest.Harness{
		Store: st,
		Begin: func(ctx context.Context) (storetest.Tx, error) {
			tx, err := pool.Begin(ctx)
			return pgTx{tx, st}, err
		},
		InsertLegacy: func(ctx context.Context, aggType, aggID, eventType, key, data string) error {
			_, err := pool.Exec(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, event_data)
				VALUES ($1, $2, $3, $4, $5::json)`, aggType, aggID, eventType, key, data)
			return err
		},
		AgePublished: func(ctx context.Context, d time.Duration) error {
			_, err := pool.Exec(ctx, `UPDATE `+table+` SET published_at = published_at - $1 * interval '1 microsecond'
				WHERE published_at IS NOT NULL`, d.Microseconds())
			return err
		},
		Count: func(ctx context.Context, where string) (n int64, err error) {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE `+where).Scan(&n)
			return n, err
		},
		Claims: func(ctx context.Context) (n int64, err error) {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM `+migrations.ClaimsTable(table)).Scan(&n)
			return n, err
		},
		Held: func(ctx context.Context, id uuid.UUID) (held bool, err error) {
			err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+migrations.ClaimsTable(table)+` WHERE $1 = ANY(event_ids))`, id).Scan(&held)
			return held, err
		},
		Row: func(ctx context.Context, id uuid.UUID) (retries int, lastError string, err error) {
			var last *string
			err = pool.QueryRow(ctx, `SELECT retry_count, last_error FROM `+table+` WHERE id = $1`, id.String()).Scan(&retries, &last)
			if last != nil {
				lastError = *last
			}
			return retries, lastError, err
		},
		Lock: func(ctx context.Context, id uuid.UUID) (func() error, error) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := tx.Exec(ctx, `SELECT 1 FROM `+table+` WHERE id = $1 FOR UPDATE`, id.String()); err != nil {
				_ = tx.Rollback(ctx)
				return nil, err
			}
			return func() error { return tx.Rollback(context.Background()) }, nil
		},
		LockWaits: func(ctx context.Context) (n int, err error) {
			err = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND position($1 in query) > 0`, table).Scan(&n)
			return n, err
		},
	}
}

type pgTx struct {
	tx pgx.Tx
	st *postgres.Store
}

func (p pgTx) Add(ctx context.Context, events ...outbox.Event) error {
	return p.st.AddTx(ctx, p.tx, events...)
}
func (p pgTx) Savepoint(ctx context.Context, name string) error {
	_, err := p.tx.Exec(ctx, "SAVEPOINT "+name)
	return err
}
func (p pgTx) RollbackTo(ctx context.Context, name string) error {
	_, err := p.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+name)
	return err
}
func (p pgTx) Commit(ctx context.Context) error   { return p.tx.Commit(ctx) }
func (p pgTx) Rollback(ctx context.Context) error { return p.tx.Rollback(ctx) }

// MySQLStore returns a MySQL store over a fresh, migrated table of its own,
// dropped at the end of the test. cfg.Table is ignored.
func MySQLStore(t testing.TB, cfg mysql.Config) *mysql.Store {
	t.Helper()
	db := MySQL(t)
	cfg.Table = Table("outbox")
	ctx := context.Background()
	if err := migrations.Up(ctx, db, migrations.MySQL, cfg.Table); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+cfg.Table+", "+migrations.ClaimsTable(cfg.Table))
		_, _ = db.ExecContext(ctx, "DELETE FROM outbox_migrations WHERE table_name = ?", cfg.Table)
	})
	st, err := mysql.New(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// MySQLHarness returns a conformance harness over a fresh MySQL table.
func MySQLHarness(t *testing.T) storetest.Harness {
	st := MySQLStore(t, mysql.Config{})
	db, table := st.DB(), st.Table()
	h := sqlHarness(st, db, table, st.AddTx,
		`UPDATE `+table+` SET published_at = published_at - INTERVAL ? MICROSECOND WHERE published_at IS NOT NULL`,
		`LOCATE(?, event_ids) > 0`)
	h.Lock = func(ctx context.Context, id uuid.UUID) (func() error, error) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `SELECT 1 FROM `+table+` WHERE id = ? FOR UPDATE`, id.String()); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
		return tx.Rollback, nil
	}
	// From InnoDB's own report: MariaDB's information_schema.innodb_trx
	// leaves out an INSERT that waits for a gap.
	h.LockWaits = func(ctx context.Context) (int, error) {
		var typ, name, status string
		if err := db.QueryRowContext(ctx, "SHOW ENGINE INNODB STATUS").Scan(&typ, &name, &status); err != nil {
			return 0, err
		}
		n := 0
		for _, trx := range strings.Split(status, "---TRANSACTION ")[1:] {
			if strings.Contains(trx, "LOCK WAIT") && strings.Contains(trx, table) {
				n++
			}
		}
		return n, nil
	}
	return h
}

// sqlHarness is what the harnesses of the database/sql stores (MySQL,
// SQLite) share: ageSQL moves published_at back by its one parameter in
// microseconds, heldSQL finds an event ID (its one parameter) in a claim's
// event_ids. Python-style legacy rows have no id (the column default fills
// it), no topic and no headers.
func sqlHarness(st store.Store, db *sql.DB, table string, add func(context.Context, *sql.Tx, ...outbox.Event) error, ageSQL, heldSQL string) storetest.Harness {
	return storetest.Harness{
		Store: st,
		Begin: func(ctx context.Context) (storetest.Tx, error) {
			tx, err := db.BeginTx(ctx, nil)
			return sqlTx{tx, add}, err
		},
		InsertLegacy: func(ctx context.Context, aggType, aggID, eventType, key, data string) error {
			_, err := db.ExecContext(ctx, `INSERT INTO `+table+` (aggregate_type, aggregate_id, event_type, event_key, event_data)
				VALUES (?, ?, ?, ?, ?)`, aggType, aggID, eventType, key, data)
			return err
		},
		AgePublished: func(ctx context.Context, d time.Duration) error {
			_, err := db.ExecContext(ctx, ageSQL, d.Microseconds())
			return err
		},
		Count: func(ctx context.Context, where string) (n int64, err error) {
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE `+where).Scan(&n)
			return n, err
		},
		Claims: func(ctx context.Context) (n int64, err error) {
			err = db.QueryRowContext(ctx, `SELECT count(*) FROM `+migrations.ClaimsTable(table)).Scan(&n)
			return n, err
		},
		Held: func(ctx context.Context, id uuid.UUID) (held bool, err error) {
			err = db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+migrations.ClaimsTable(table)+` WHERE `+heldSQL+`)`, id.String()).Scan(&held)
			return held, err
		},
		Row: func(ctx context.Context, id uuid.UUID) (retries int, lastError string, err error) {
			var last sql.NullString
			err = db.QueryRowContext(ctx, `SELECT retry_count, last_error FROM `+table+` WHERE id = ?`, id.String()).Scan(&retries, &last)
			return retries, last.String, err
		},
	}
}

// sqlTx is a business transaction of a database/sql store (MySQL, SQLite)
// that writes events with add, the store's AddTx.
type sqlTx struct {
	tx  *sql.Tx
	add func(ctx context.Context, tx *sql.Tx, events ...outbox.Event) error
}

func (s sqlTx) Add(ctx context.Context, events ...outbox.Event) error {
	return s.add(ctx, s.tx, events...)
}
func (s sqlTx) Savepoint(ctx context.Context, name string) error {
	_, err := s.tx.ExecContext(ctx, "SAVEPOINT "+name)
	return err
}
func (s sqlTx) RollbackTo(ctx context.Context, name string) error {
	_, err := s.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name)
	return err
}
func (s sqlTx) Commit(context.Context) error   { return s.tx.Commit() }
func (s sqlTx) Rollback(context.Context) error { return s.tx.Rollback() }
