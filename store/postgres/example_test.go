package postgres_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/store/postgres"
)

type orderPlaced struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total_cents"`
}

// printer is a broker.Publisher that hands what the relay publishes to the
// example; broker/kafka is the publisher of a real service.
type printer chan *outbox.Message

func (p printer) Publish(_ context.Context, msgs []*outbox.Message) []error {
	for _, m := range msgs {
		p <- m
	}
	return nil
}

// Write an event in the same transaction as the business row, and let a
// relay publish it once the transaction committed.
func Example() {
	ctx := context.Background()
	url := cmp.Or(os.Getenv("OUTBOX_POSTGRES_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	table := "example_outbox"
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.PostgreSQL, table); err != nil {
		panic(err)
	}
	defer func() { // revert every version: the last one drops the table
		ms, _ := migrations.PostgreSQL.Migrations()
		for range ms {
			_ = migrations.Down(ctx, db, migrations.PostgreSQL, table)
		}
	}()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS example_orders (id text PRIMARY KEY, total int)`); err != nil {
		panic(err)
	}
	defer pool.Exec(ctx, `DROP TABLE example_orders`)

	st, err := postgres.New(pool, postgres.Config{Table: table})
	if err != nil {
		panic(err)
	}

	// The business transaction: the order row and its event commit together.
	tx, err := pool.Begin(ctx)
	if err != nil {
		panic(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO example_orders VALUES ('order-1', 4200)`); err != nil {
		panic(err)
	}
	event, err := outbox.Envelope[orderPlaced]{
		EventType: "order.placed.v1", SourceService: "shop", Data: orderPlaced{"order-1", 4200},
	}.Event("orders", "order", "order-1")
	if err != nil {
		panic(err)
	}
	if err := st.AddTx(ctx, tx, event); err != nil {
		panic(err)
	}
	if err := tx.Commit(ctx); err != nil {
		panic(err)
	}

	messages := make(printer, 1)
	r, err := relay.New(st, messages, relay.Config{})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()

	select {
	case msg := <-messages:
		env, _ := outbox.DecodeEnvelope[orderPlaced](msg.Value)
		fmt.Println(msg.Topic, msg.Key, msg.Headers[outbox.HeaderEventType], env.Data.OrderID, env.Data.Total, msg.ID == event.ID)
	case <-time.After(10 * time.Second):
		fmt.Println("timed out")
	}
	stop()
	<-done
	// Output: orders order-1 order.placed.v1 order-1 4200 true
}
