package e2e_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/storetest"
)

func childEnvFor(dialect string, h storetest.Harness, brokers []string, extra ...string) []string {
	return append([]string{
		"OUTBOX_POSTGRES_URL=" + testenv.PostgresURL(), "OUTBOX_MYSQL_DSN=" + testenv.MySQLDSN(),
		"E2E_DIALECT=" + dialect, "E2E_TABLE=" + tableOf(h), "E2E_BROKERS=" + strings.Join(brokers, ","),
	}, extra...)
}

// P4 across processes: three relay processes, 20,000 events over 200 keys,
// 10% of publishes failing at random, to Kafka: nothing lost, zero per-key
// inversions, duplicates at most the counted ones.
func TestRelayProcessesPerKeyOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const keys, rounds = 200, 100
	h := testenv.PostgresHarness(t)
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopic(t, brokers, 4)
	tc := testenv.ConsumeKafka(t, brokers, topic)
	check := faulttest.NewChecker()
	var children []*child
	for range 3 {
		children = append(children, startChild(t, childEnvFor("postgres", h, brokers, "E2E_FAIL_RATE=0.10")...))
	}
	for i := range rounds {
		batch := make([]outbox.Event, 0, keys)
		for k := range keys {
			batch = append(batch, event(topic, fmt.Sprint("key-", k), i))
		}
		commit(t, h, check, batch...)
	}
	tc.WaitAll(t, check, 3*time.Minute)
	waitSettled(t, h, time.Minute)
	for _, c := range children {
		c.signal(syscall.SIGTERM)
	}
	report := check.Check(testenv.KafkaReceived(t, brokers, topic), counted(children))
	t.Log(report)
	require.True(t, report.OK(), report.String())
	require.Equal(t, keys*rounds, report.Committed)
	require.Zero(t, count(t, h, "lease_token IS NOT NULL"), "SIGTERM released every lease")
}

// P2/P3: a relay process is SIGKILLed 5 times while 2,000 events are
// written at up to 300 events/s, on PostgreSQL and on MariaDB: at every
// sixth of the events, once it has begun a publish.
// Nothing is lost, and the duplicates on the topic are at most what the
// relays counted.
func TestRelaySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const total, kills = 2000, 5
	for _, db := range harnesses {
		t.Run(db.dialect, func(t *testing.T) {
			h := db.new(t)
			brokers := testenv.Kafka(t)
			topic := testenv.KafkaTopic(t, brokers, 4)
			tc := testenv.ConsumeKafka(t, brokers, topic)
			check := faulttest.NewChecker()
			env := childEnvFor(db.dialect, h, brokers)
			children := []*child{startChild(t, env...)}

			writing := make(chan struct{})
			go func() {
				defer close(writing)
				writeSteadily(t, h, check, topic, 30, 300, total)
			}()
			for i := 1; i <= kills; i++ {
				c := children[len(children)-1]
				relaytest.Eventually(t, 2*time.Minute, fmt.Sprintf("%d events written and relay %d publishing", i*total/(kills+1), i), func() bool {
					return check.Len() >= i*total/(kills+1) && c.reports.Load() > 0
				})
				c.signal(syscall.SIGKILL)
				children = append(children, startChild(t, env...))
			}
			<-writing
			tc.WaitAll(t, check, 2*time.Minute)
			waitSettled(t, h, time.Minute)
			children[len(children)-1].signal(syscall.SIGTERM)
			report := check.Check(testenv.KafkaReceived(t, brokers, topic), counted(children))
			t.Log(report)
			require.True(t, report.OK(), report.String())
			require.Equal(t, total, report.Committed)
			require.Zero(t, count(t, h, "lease_token IS NOT NULL"), "nothing leased")
		})
	}
}
