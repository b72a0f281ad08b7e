package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/postgres"
)

// The relay's promises on PostgreSQL; store/mysql runs the same suite.
func TestRelayConformance(t *testing.T) {
	relaytest.Run(t, testenv.PostgresHarness)
}

// Killing the relay's database connections (pg_terminate_backend): it
// recovers and loses nothing.
func TestTerminatedConnections(t *testing.T) {
	t.Parallel()
	st := testenv.PostgresStore(t, postgres.Config{})
	ctx := context.Background()
	// The relay has a pool of its own, as in a separate deployment, tagged
	// so that the test finds its connections.
	pcfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
	require.NoError(t, err)
	app := testenv.Table("relay")
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	relayPool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(relayPool.Close)
	relayStore, err := postgres.New(relayPool, postgres.Config{Table: st.Table()})
	require.NoError(t, err)

	check := faulttest.NewChecker()
	rec := faulttest.NewRecorder()
	cfg := relaytest.FastConfig()
	cfg.Lease = 3 * time.Second // bounds the wait for a claim whose answer was lost
	r, _ := relaytest.Start(t, relayStore, rec, cfg)

	killed := 0
	for round := range 20 {
		var batch []outbox.Event
		for k := range 50 {
			batch = append(batch, relaytest.Event(fmt.Sprint("k", k), round))
		}
		tx, err := st.Pool().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, st.AddTx(ctx, tx, batch...))
		require.NoError(t, tx.Commit(ctx))
		check.Committed(batch...)
		var n int
		require.NoError(t, st.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1`, app).Scan(&n))
		killed += n
		time.Sleep(20 * time.Millisecond)
	}
	require.Greater(t, killed, 0)
	relaytest.Eventually(t, 30*time.Second, "all published", func() bool { return check.Missing(rec.Received()) == 0 })
	report := check.Check(rec.Received(), r.Stats().PossibleDuplicates)
	t.Log(report, "; connections killed:", killed)
	require.True(t, report.OK(), report.String())
}
