package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store/postgres"
	"github.com/outboxkit/outbox/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		st := testenv.PostgresStore(t, postgres.Config{})
		pool := st.Pool()
		return storetest.Harness{
			Store: st,
			Begin: func(ctx context.Context) (storetest.Tx, error) {
				tx, err := pool.Begin(ctx)
				return pgTx{tx, st}, err
			},
			InsertLegacy: func(ctx context.Context, aggType, aggID, eventType, key, data string) error {
				_, err := pool.Exec(ctx, `INSERT INTO `+st.Table()+` (aggregate_type, aggregate_id, event_type, event_key, event_data)
					VALUES ($1, $2, $3, $4, $5::json)`, aggType, aggID, eventType, key, data)
				return err
			},
			AgePublished: func(ctx context.Context, d time.Duration) error {
				_, err := pool.Exec(ctx, `UPDATE `+st.Table()+` SET published_at = published_at - $1 * interval '1 microsecond'
					WHERE published_at IS NOT NULL`, d.Microseconds())
				return err
			},
		}
	})
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
