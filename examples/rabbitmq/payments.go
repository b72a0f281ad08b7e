package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/store/postgres"
)

// PaymentChanged is the data of the payment events.
type PaymentChanged struct {
	PaymentID   string `json:"payment_id"`
	Status      string `json:"status"`
	AmountCents int    `json:"amount_cents"`
}

// statuses are the events of a payment, in the order they are written.
var statuses = []string{"authorized", "captured", "settled"}

// paymentsDB is the service's database: a payments table and the outbox.
type paymentsDB struct {
	pool *pgxpool.Pool
	st   *postgres.Store
}

func openPayments(ctx context.Context, url, table string) (*paymentsDB, error) {
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
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS rabbitmq_payments (
		id TEXT PRIMARY KEY, status TEXT NOT NULL, amount_cents INT NOT NULL)`); err != nil {
		pool.Close()
		return nil, err
	}
	st, err := postgres.New(pool, postgres.Config{Table: table})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &paymentsDB{pool, st}, nil
}

func (db *paymentsDB) Close() { db.pool.Close() }

// Pay takes a payment through its statuses, one transaction each that
// updates the payment and adds its event to topic (the payment ID is the
// key), and returns the event IDs. With rollback, the first transaction
// rolls back and the payment goes no further.
func (db *paymentsDB) Pay(ctx context.Context, topic, paymentID, run string, amountCents int, rollback bool) ([]string, error) {
	var ids []string
	for _, status := range statuses {
		event, err := outbox.Envelope[PaymentChanged]{
			EventType:     "payments.payment." + status + ".v1",
			SourceService: "payments",
			Data:          PaymentChanged{PaymentID: paymentID, Status: status, AmountCents: amountCents},
			Metadata:      map[string]any{"run": run},
		}.Event(topic, "payment", paymentID)
		if err != nil {
			return nil, err
		}
		ids = append(ids, event.ID.String())
		if err := db.write(ctx, paymentID, status, amountCents, event, rollback); err != nil || rollback {
			return ids, err
		}
	}
	return ids, nil
}

func (db *paymentsDB) write(ctx context.Context, paymentID, status string, amountCents int, event outbox.Event, rollback bool) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO rabbitmq_payments (id, status, amount_cents) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status`, paymentID, status, amountCents); err != nil {
		return err
	}
	if err := db.st.AddTx(ctx, tx, event); err != nil {
		return err
	}
	if rollback {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}
