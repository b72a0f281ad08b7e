package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
	"github.com/outboxkit/outbox/store/postgres"
)

// lateClaim holds each Claim until shutdown has begun, then claims: as when
// a claim commits on the server while the relay is being stopped.
type lateClaim struct {
	store.Store
	stopping <-chan struct{}
}

func (l lateClaim) Claim(ctx context.Context, p store.ClaimParams) (store.Claim, error) {
	<-l.stopping
	return l.Store.Claim(ctx, p)
}

// A claim that commits after shutdown began is a batch in flight: the relay
// finishes it, and no claim outlives Run.
func TestClaimDuringShutdown(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	tx, err := st.Pool().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.AddTx(ctx, tx, relaytest.Event("k", 0), relaytest.Event("k", 1)))
	require.NoError(t, tx.Commit(ctx))

	stopping := make(chan struct{})
	rec := faulttest.NewRecorder()
	_, stop := relaytest.Start(t, lateClaim{st, stopping}, rec, relaytest.FastConfig())
	time.Sleep(20 * time.Millisecond) // Run is inside Claim
	go func() {
		time.Sleep(20 * time.Millisecond) // shutdown has begun
		close(stopping)
	}()
	stop()

	var claims, published int
	require.NoError(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM `+migrations.ClaimsTable(st.Table())+`),
		(SELECT count(*) FROM `+st.Table()+` WHERE published_at IS NOT NULL)`).Scan(&claims, &published))
	require.Zero(t, claims, "no claim outlives Run")
	require.Equal(t, 2, published, "the batch claimed during shutdown was finished")
	require.Len(t, rec.Received(), 2)
}
