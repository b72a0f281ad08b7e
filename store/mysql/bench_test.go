package mysql_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/store"
)

// BenchmarkClaim measures claims. Batch100 claims and marks 100 events of a
// backlog over 100 keys. Empty is the fixed cost of a claim: a connection,
// GET_LOCK, the transaction and RELEASE_LOCK around a SELECT that finds
// nothing; with several claimers it shows what serializing claims costs.
func BenchmarkClaim(b *testing.B) {
	params := store.ClaimParams{Owner: "bench", Limit: 100, Lease: time.Minute}
	b.Run("Batch100", func(b *testing.B) {
		st := newStore(b)
		ctx := b.Context()
		events := make([]outbox.Event, 1000)
		for i := range events {
			events[i] = event(fmt.Sprint("k", i%100))
		}
		for b.Loop() {
			c, err := st.Claim(ctx, params)
			if err != nil {
				b.Fatal(err)
			}
			if len(c.Records) == 0 {
				b.StopTimer()
				tx, err := st.DB().BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.AddTx(ctx, tx, events...); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				continue
			}
			ids := make([]uuid.UUID, len(c.Records))
			for i, r := range c.Records {
				ids[i] = r.ID
			}
			if _, err := st.MarkPublished(ctx, c.Token, ids); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, claimers := range []int{1, 4} {
		b.Run(fmt.Sprintf("Empty/claimers=%d", claimers), func(b *testing.B) {
			st := newStore(b)
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range claimers {
				wg.Go(func() {
					for i := w; i < b.N; i += claimers {
						if _, err := st.Claim(b.Context(), params); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// BenchmarkClaimMark is what a drain costs MariaDB, with no broker: claims of
// 500 events (the relay's default batch) from a backlog over 1,000 keys, each
// followed by its mark (or, for delete, publish-and-delete), one after the
// other, as store/postgres measures it. -benchtime 100x drains one
// 50,000-event backlog.
func BenchmarkClaimMark(b *testing.B) {
	for _, mode := range []string{"mark", "delete"} {
		b.Run(mode, func(b *testing.B) {
			st := newStore(b)
			ctx := b.Context()
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
			params := store.ClaimParams{Owner: "bench", Limit: 500, Lease: time.Minute}
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
					for range 50 {
						events := make([]outbox.Event, 1000)
						for i := range events {
							events[i] = event(fmt.Sprint("key-", i))
						}
						tx, err := st.DB().BeginTx(ctx, nil)
						if err != nil {
							b.Fatal(err)
						}
						if err := st.AddTx(ctx, tx, events...); err != nil {
							b.Fatal(err)
						}
						if err := tx.Commit(); err != nil {
							b.Fatal(err)
						}
					}
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
		})
	}
}
