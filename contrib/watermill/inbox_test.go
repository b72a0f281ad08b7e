package outboxwatermill_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	outboxwatermill "github.com/outboxkit/outbox/contrib/watermill"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
)

// inboxCase is one database: a migrated inbox table and an effects table,
// and a handler whose effect is one row in the effects table.
type inboxCase struct {
	db      *sql.DB
	dialect migrations.Dialect
	table   string
	effects string
	// prune is the Prune of an inbox over the table.
	prune func(ctx context.Context, olderThan time.Duration) (int64, error)
	// handler returns the inbox's handler around the effect; fail makes the
	// effect fail once for the given message UUID, after it wrote its row.
	handler func(cfg outboxwatermill.InboxConfig, fail func(id string) bool) message.NoPublishHandlerFunc
}

func pgInbox(t *testing.T) inboxCase {
	pool := testenv.Postgres(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	table, effects := migrateInbox(t, db, migrations.PostgreSQL)
	pruner, err := outboxwatermill.NewPgxInbox(pool, outboxwatermill.InboxConfig{Table: table})
	require.NoError(t, err)
	return inboxCase{db: db, dialect: migrations.PostgreSQL, table: table, effects: effects, prune: pruner.Prune,
		handler: func(cfg outboxwatermill.InboxConfig, fail func(string) bool) message.NoPublishHandlerFunc {
			cfg.Table = table
			inbox, err := outboxwatermill.NewPgxInbox(pool, cfg)
			require.NoError(t, err)
			return inbox.Handler(func(ctx context.Context, tx pgx.Tx, msg *message.Message) error {
				if _, err := tx.Exec(ctx, "INSERT INTO "+effects+" (message_id) VALUES ($1)", msg.UUID); err != nil {
					return err
				}
				if fail(msg.UUID) {
					return errors.New("effect failed")
				}
				return nil
			})
		}}
}

func mysqlInbox(t *testing.T) inboxCase {
	return sqlInbox(t, testenv.MySQL(t), migrations.MySQL)
}

// pgSQLInbox is PostgreSQL through database/sql (pgx's stdlib driver).
func pgSQLInbox(t *testing.T) inboxCase {
	db := stdlib.OpenDBFromPool(testenv.Postgres(t))
	t.Cleanup(func() { db.Close() })
	return sqlInbox(t, db, migrations.PostgreSQL)
}

func sqlInbox(t *testing.T, db *sql.DB, d migrations.Dialect) inboxCase {
	table, effects := migrateInbox(t, db, d)
	insert := "INSERT INTO " + effects + " (message_id) VALUES (?)"
	if d.Name() == migrations.PostgreSQL.Name() {
		insert = "INSERT INTO " + effects + " (message_id) VALUES ($1)"
	}
	pruner, err := outboxwatermill.NewSQLInbox(db, d, outboxwatermill.InboxConfig{Table: table})
	require.NoError(t, err)
	return inboxCase{db: db, dialect: d, table: table, effects: effects, prune: pruner.Prune,
		handler: func(cfg outboxwatermill.InboxConfig, fail func(string) bool) message.NoPublishHandlerFunc {
			cfg.Table = table
			inbox, err := outboxwatermill.NewSQLInbox(db, d, cfg)
			require.NoError(t, err)
			return inbox.Handler(func(ctx context.Context, tx *sql.Tx, msg *message.Message) error {
				if _, err := tx.ExecContext(ctx, insert, msg.UUID); err != nil {
					return err
				}
				if fail(msg.UUID) {
					return errors.New("effect failed")
				}
				return nil
			})
		}}
}

// migrateInbox creates an inbox table through MigrateInbox (twice, which
// must be a no-op) and an effects table, both dropped at the end of the test.
func migrateInbox(t *testing.T, db *sql.DB, d migrations.Dialect) (inbox, effects string) {
	t.Helper()
	ctx := context.Background()
	inbox, effects = testenv.Table("inbox"), testenv.Table("effects")
	require.NoError(t, outboxwatermill.MigrateInbox(ctx, db, d, inbox))
	require.NoError(t, outboxwatermill.MigrateInbox(ctx, db, d, inbox))
	_, err := db.ExecContext(ctx, "CREATE TABLE "+effects+" (message_id VARCHAR(64) NOT NULL)")
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = outboxwatermill.RevertInbox(context.Background(), db, d, inbox)
		_, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+effects)
	})
	return inbox, effects
}

var inboxCases = []struct {
	name string
	new  func(t *testing.T) inboxCase
}{{"postgres", pgInbox}, {"mysql", mysqlInbox}, {"postgres database/sql", pgSQLInbox}}

// Through a router: a message delivered three times runs its effect once
// and is acked each time; a message whose first attempt fails (effect
// written, then rolled back) runs its effect once on the redelivery.
func TestInboxRedeliveryRunsEffectOnce(t *testing.T) {
	t.Parallel()
	for _, c := range inboxCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ic := c.new(t)
			pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
			defer pubsub.Close()
			router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
			require.NoError(t, err)

			redelivered := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
			failsOnce := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
			var failed atomic.Bool
			var duplicates atomic.Int64
			handler := ic.handler(outboxwatermill.InboxConfig{OnDuplicate: func(*message.Message) { duplicates.Add(1) }},
				func(id string) bool { return id == failsOnce.UUID && failed.CompareAndSwap(false, true) })
			acked := make(chan string, 10)
			router.AddConsumerHandler("on-order", "orders", pubsub, func(msg *message.Message) error {
				err := handler(msg)
				if err == nil {
					acked <- msg.UUID
				}
				return err
			})
			go func() { _ = router.Run(context.Background()) }()
			defer router.Close()
			<-router.Running()

			for range 3 {
				require.NoError(t, pubsub.Publish("orders", redelivered.Copy()))
			}
			require.NoError(t, pubsub.Publish("orders", failsOnce))
			for range 4 {
				select {
				case <-acked:
				case <-time.After(10 * time.Second):
					t.Fatal("messages not acked")
				}
			}

			effects := func(id string) int {
				return count(t, ic.db, "SELECT count(*) FROM "+ic.effects+" WHERE message_id = '"+id+"'")
			}
			require.Equal(t, 1, effects(redelivered.UUID))
			require.Equal(t, 1, effects(failsOnce.UUID))
			require.True(t, failed.Load(), "the first attempt failed")
			require.EqualValues(t, 2, duplicates.Load())
		})
	}
}

// Prune deletes the rows of messages handled before the cutoff, in several
// chunks when there are many, and none of the recent ones.
func TestInboxPrune(t *testing.T) {
	t.Parallel()
	for _, c := range inboxCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ic := c.new(t)
			ctx := context.Background()
			ago := "now() - interval '2 hours'"
			if ic.dialect.Name() == migrations.MySQL.Name() {
				ago = "NOW(6) - INTERVAL 2 HOUR"
			}
			const old = 2500 // more than two chunks
			for start := 0; start < old; start += 500 {
				var values []string
				for i := start; i < start+500; i++ {
					values = append(values, fmt.Sprintf("('on-order', 'old-%d', %s)", i, ago))
				}
				_, err := ic.db.ExecContext(ctx, "INSERT INTO "+ic.table+" (consumer, message_id, processed_at) VALUES "+strings.Join(values, ", "))
				require.NoError(t, err)
			}
			_, err := ic.db.ExecContext(ctx, "INSERT INTO "+ic.table+" (consumer, message_id) VALUES ('on-order', 'new-1'), ('on-order', 'new-2'), ('other', 'old-1')")
			require.NoError(t, err)

			n, err := ic.prune(ctx, time.Hour)
			require.NoError(t, err)
			require.EqualValues(t, old, n)
			require.Equal(t, 3, count(t, ic.db, "SELECT count(*) FROM "+ic.table))
			n, err = ic.prune(ctx, time.Hour)
			require.NoError(t, err)
			require.Zero(t, n)
			_, err = ic.prune(ctx, 0)
			require.Error(t, err)
			require.Equal(t, 3, count(t, ic.db, "SELECT count(*) FROM "+ic.table))
		})
	}
}

// Concurrent deliveries of one message (a consumer-group rebalance) run its
// effect once: the later inserts wait on the first's row, then find it.
func TestInboxConcurrentDeliveriesRunEffectOnce(t *testing.T) {
	t.Parallel()
	for _, c := range inboxCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ic := c.new(t)
			handler := ic.handler(outboxwatermill.InboxConfig{}, func(string) bool { return false })
			msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() { require.NoError(t, handler(msg.Copy())) })
			}
			wg.Wait()
			require.Equal(t, 1, count(t, ic.db, "SELECT count(*) FROM "+ic.effects))
		})
	}
}

func TestInboxMigrations(t *testing.T) {
	t.Parallel()
	for _, c := range inboxCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ic := c.new(t)
			d := ic.dialect
			table := testenv.Table("inbox")
			ctx := context.Background()
			require.NoError(t, outboxwatermill.MigrateInbox(ctx, ic.db, d, table))
			require.Zero(t, count(t, ic.db, "SELECT count(*) FROM "+table))
			require.Equal(t, 1, count(t, ic.db, "SELECT count(*) FROM outbox_migrations WHERE table_name = '"+table+"'"))
			require.NoError(t, outboxwatermill.RevertInbox(ctx, ic.db, d, table))
			_, err := ic.db.ExecContext(ctx, "SELECT count(*) FROM "+table)
			require.Error(t, err, "the table is dropped")
			require.Zero(t, count(t, ic.db, "SELECT count(*) FROM outbox_migrations WHERE table_name = '"+table+"'"))
			require.NoError(t, outboxwatermill.RevertInbox(ctx, ic.db, d, table), "nothing left to revert")
		})
	}
}
