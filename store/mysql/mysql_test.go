package mysql_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the driver check
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/mysql"
	"github.com/outboxkit/outbox/store/storetest"
)

// newStore returns a store over a fresh, migrated table that is dropped at
// the end of the test.
func newStore(t testing.TB) *mysql.Store {
	t.Helper()
	db := testenv.MySQL(t)
	table := testenv.Table("outbox")
	ctx := context.Background()
	require.NoError(t, migrations.Up(ctx, db, migrations.MySQL, table))
	t.Cleanup(func() {
		_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table)
		_, _ = db.ExecContext(context.Background(), "DELETE FROM outbox_migrations WHERE table_name = ?", table)
	})
	st, err := mysql.New(db, mysql.Config{Table: table})
	require.NoError(t, err)
	return st
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		st := newStore(t)
		db := st.DB()
		return storetest.Harness{
			Store: st,
			Begin: func(ctx context.Context) (storetest.Tx, error) {
				tx, err := db.BeginTx(ctx, nil)
				return sqlTx{tx, st}, err
			},
			// Like the seed's writers: no id (the column default fills it),
			// no topic, no headers.
			InsertLegacy: func(ctx context.Context, aggType, aggID, eventType, key, data string) error {
				_, err := db.ExecContext(ctx, `INSERT INTO `+st.Table()+` (aggregate_type, aggregate_id, event_type, event_key, event_data)
					VALUES (?, ?, ?, ?, ?)`, aggType, aggID, eventType, key, data)
				return err
			},
			AgePublished: func(ctx context.Context, d time.Duration) error {
				_, err := db.ExecContext(ctx, `UPDATE `+st.Table()+` SET published_at = published_at - INTERVAL ? MICROSECOND
					WHERE published_at IS NOT NULL`, d.Microseconds())
				return err
			},
		}
	})
}

type sqlTx struct {
	tx *sql.Tx
	st *mysql.Store
}

func (s sqlTx) Add(ctx context.Context, events ...outbox.Event) error {
	return s.st.AddTx(ctx, s.tx, events...)
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

func TestNewChecksDriver(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", "postgres://127.0.0.1:1/none")
	require.NoError(t, err)
	defer db.Close()
	_, err = mysql.New(db, mysql.Config{})
	require.ErrorContains(t, err, "want go-sql-driver/mysql")
	_, err = mysql.New(nil, mysql.Config{})
	require.Error(t, err)
}
