package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// BenchmarkClaimMark is what a drain costs PostgreSQL, with no broker: claims
// of 500 events (the relay's default batch) from a backlog over 1,000 keys,
// each followed by its mark, one after the other. It reports the cost of each
// statement per event; docs/BENCHMARKS.md explains why they bound the drain.
// -benchtime 100x drains one 50,000-event backlog; more iterations refill it
// and measure an ever larger table (no janitor runs). The delete variant
// settles by deleting the events (publish-and-delete).
func BenchmarkClaimMark(b *testing.B) {
	for _, mode := range []string{"mark", "delete"} {
		b.Run(mode, func(b *testing.B) {
			st := testenv.PostgresStore(b, postgres.Config{})
			settle := st.MarkPublished
			if mode == "delete" {
				d, ok := any(st).(interface {
					DeletePublishedNow(context.Context, uuid.UUID, []uuid.UUID) (int, error)
				})
				if !ok {
					b.Skip("no publish-and-delete")
				}
				settle = d.DeletePublishedNow
			}
			claimMark(b, st, settle)
		})
	}
}

func claimMark(b *testing.B, st *postgres.Store, settle func(context.Context, uuid.UUID, []uuid.UUID) (int, error)) {
	ctx := b.Context()
	params := store.ClaimParams{Owner: "bench", Limit: 500, Lease: time.Minute}
	refill := func() {
		for range 50 {
			events := make([]outbox.Event, 1000)
			for i := range events {
				events[i] = benchEvent(fmt.Sprint("key-", i))
			}
			tx, err := st.Pool().Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := st.AddTx(ctx, tx, events...); err != nil {
				b.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	var claimed int
	var claiming, marking time.Duration
	for b.Loop() {
		t0 := time.Now()
		c, err := st.Claim(ctx, params)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Records) == 0 {
			b.StopTimer()
			refill()
			b.StartTimer()
			continue
		}
		t1 := time.Now()
		ids := make([]uuid.UUID, len(c.Records))
		for i, r := range c.Records {
			ids[i] = r.ID
		}
		if _, err := settle(ctx, c.Token, ids); err != nil {
			b.Fatal(err)
		}
		claiming += t1.Sub(t0)
		marking += time.Since(t1)
		claimed += len(ids)
	}
	if claimed > 0 {
		b.ReportMetric(float64(claiming.Microseconds())/float64(claimed), "claim-µs/event")
		b.ReportMetric(float64(marking.Microseconds())/float64(claimed), "mark-µs/event")
	}
}

// BenchmarkWrite is the writer's side: a business transaction (BEGIN, one
// business row, COMMIT) alone, with one event added by AddTx (a statement of
// its own), and with the event queued by Queue into the business statement's
// batch (no round trip of its own). The differences are what an event adds;
// business+SELECT1 puts a statement that does nothing into the batch, the
// floor of any statement there.
func BenchmarkWrite(b *testing.B) {
	st := testenv.PostgresStore(b, postgres.Config{})
	pool := st.Pool()
	ctx := b.Context()
	biz := testenv.Table("bench_business")
	if _, err := pool.Exec(ctx, "CREATE TABLE "+biz+" (id BIGSERIAL PRIMARY KEY, customer TEXT NOT NULL, amount BIGINT NOT NULL)"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+biz) })
	insert := "INSERT INTO " + biz + " (customer, amount) VALUES ($1, $2)"
	for _, variant := range []string{"business", "business+SELECT1", "business+Queue", "business+AddTx"} {
		b.Run(variant, func(b *testing.B) {
			for b.Loop() {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					batch := &pgx.Batch{}
					batch.Queue(insert, "customer-1", 42)
					if variant == "business+SELECT1" {
						batch.Queue("SELECT 1")
					}
					if variant == "business+Queue" {
						if err := st.Queue(ctx, batch, benchEvent("order-1")); err != nil {
							return err
						}
					}
					if err := tx.SendBatch(ctx, batch).Close(); err != nil {
						return err
					}
					if variant == "business+AddTx" {
						return st.AddTx(ctx, tx, benchEvent("order-1"))
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchEvent is an event of key with a ~250-byte envelope.
func benchEvent(key string) outbox.Event {
	return outbox.Event{Topic: "orders", AggregateType: "order", AggregateID: key, EventType: "bench.order.created.v1",
		Payload: []byte(`{"event_type":"bench.order.created.v1","data":{"note":"` + strings.Repeat("x", 200) + `"}}`)}
}
