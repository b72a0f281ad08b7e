package mysql_test

import (
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
