package e2e_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/postgres"
)

// killer terminates the relay's database connections (pg_terminate_backend)
// for 400 ms after every fifth publish the broker accepted, so that the
// mark that follows fails for longer than the relay's SettleTimeout.
type killer struct {
	admin  *pgxpool.Pool
	app    string
	n      atomic.Int64
	killed atomic.Int64
	wg     sync.WaitGroup
}

func (k *killer) TracePublishStart(ctx context.Context, _ outbox.TracePublishStartData) context.Context {
	return ctx
}

func (k *killer) TracePublishEnd(_ context.Context, d outbox.TracePublishEndData) {
	if d.Errs != nil || k.n.Add(1)%5 != 0 {
		return
	}
	k.wg.Go(func() {
		for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			var n int64
			if k.admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1`, k.app).Scan(&n) == nil {
				k.killed.Add(n)
			}
		}
	})
}

// The relay's database connections are killed for a while after some of
// its publishes, in both modes: the mark fails, and the events are
// reclaimed once the lease ends. Nothing is lost; duplicates at most the
// counted ones, none for a read_committed consumer in transactional mode.
// Events are written until the relay counted a possible duplicate (it
// reclaimed events, or lost a claim before its mark), so that the test
// always takes that path; each round once the relay caught up, since the
// relay backs off after store errors (up to 10 s).
func TestKilledDatabaseConnections(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			h := testenv.PostgresHarness(t)
			brokers := testenv.Kafka(t)
			topic := testenv.KafkaTopic(t, brokers, 4)
			tc := m.consume(t, brokers, topic)
			// The relay has a pool of its own, tagged so that the test
			// finds its connections.
			pcfg, err := pgxpool.ParseConfig(testenv.PostgresURL())
			require.NoError(t, err)
			app := testenv.Table("relay")
			pcfg.ConnConfig.RuntimeParams["application_name"] = app
			pool, err := pgxpool.NewWithConfig(ctx, pcfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			st, err := postgres.New(pool, postgres.Config{Table: tableOf(h)})
			require.NoError(t, err)
			admin, err := pgxpool.New(ctx, testenv.PostgresURL())
			require.NoError(t, err)
			t.Cleanup(admin.Close)
			kill := &killer{admin: admin, app: app}
			t.Cleanup(kill.wg.Wait)

			kc := kafka.Config{Brokers: brokers}
			if m.transactional {
				kc = transactional(kc, app, progressTopic(t, brokers))
			}
			cfg := childConfig()
			cfg.SettleTimeout = 200 * time.Millisecond // a mark gives up while the connections die
			cfg.Tracer = kill
			r := runRelay(t, st, kc, cfg)

			check := faulttest.NewChecker()
			// A round is written once the relay has caught up with the
			// earlier ones, however long a store error's backoff lasts.
			round := 0
			for ; round < 50 || r.Stats().PossibleDuplicates == 0; round++ {
				require.Less(t, round, 1000, "no possible duplicate after 1000 rounds; relay: %+v", r.Stats())
				relaytest.Eventually(t, time.Minute, "the relay caught up", func() bool {
					return count(t, h, "published_at IS NULL") < 200
				})
				batch := make([]outbox.Event, 0, 20)
				for k := range 20 {
					batch = append(batch, event(topic, fmt.Sprint("k", k), round))
				}
				commit(t, h, check, batch...)
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%d rounds, %d connections killed", round, kill.killed.Load())
			tc.WaitAll(t, check, 2*time.Minute)
			m.judge(t, brokers, topic, check, tc, r.Stats().PossibleDuplicates)
			t.Log("relay:", r.Stats())
		})
	}
}
