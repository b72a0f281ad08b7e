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
	"github.com/outboxkit/outbox/migrations"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store/sqlite"
	"github.com/outboxkit/outbox/store/storetest"
)

func childEnvFor(t *testing.T, dialect string, h storetest.Harness, brokers []string, extra ...string) []string {
	env := []string{
		"OUTBOX_POSTGRES_URL=" + testenv.PostgresURL(), "OUTBOX_MYSQL_DSN=" + testenv.MySQLDSN(),
		"E2E_DIALECT=" + dialect, "E2E_TABLE=" + tableOf(h), "E2E_BROKERS=" + strings.Join(brokers, ","),
	}
	if st, ok := h.Store.(*sqlite.Store); ok {
		env = append(env, "E2E_SQLITE_PATH="+testenv.SQLiteFile(t, st.DB()))
	}
	return append(env, extra...)
}

// progressTopic returns a progress topic of its own on the shared broker.
func progressTopic(t *testing.T, brokers []string) string {
	t.Helper()
	return testenv.KafkaTopicWith(t, brokers, 1, map[string]string{"message.timestamp.type": "LogAppendTime"})
}

// txnEnv returns the environment of a child relay in mode m: in
// transactional mode, its transactional ID and progress topic.
func txnEnv(m mode, txnID, progress string) []string {
	if !m.transactional {
		return nil
	}
	return []string{"E2E_TXN_ID=" + txnID, "E2E_PROGRESS=" + progress}
}

// Per-key order across processes, in both modes: three relay processes, 20,000 events
// over 200 keys, 10% of publishes failing at random, to Kafka; one relay is
// SIGKILLed midway and replaced by one with another transactional ID, so the
// others take over its events. Nothing is lost, zero per-key inversions;
// duplicates at most the counted ones, none in transactional mode.
func TestRelayProcessesPerKeyOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	const keys, rounds = 200, 100
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := testenv.PostgresHarness(t)
			brokers := testenv.Kafka(t)
			topic := testenv.KafkaTopic(t, brokers, 4)
			progress := progressTopic(t, brokers)
			tc := m.consume(t, brokers, topic)
			check := faulttest.NewChecker()
			start := func(n int) *child {
				env := append(childEnvFor(t, "postgres", h, brokers, "E2E_FAIL_RATE=0.10"), txnEnv(m, fmt.Sprint(tableOf(h), "-", n), progress)...)
				return startChild(t, env...)
			}
			var children []*child
			for n := range 3 {
				children = append(children, start(n))
			}
			for i := range rounds {
				batch := make([]outbox.Event, 0, keys)
				for k := range keys {
					batch = append(batch, event(topic, fmt.Sprint("key-", k), i))
				}
				commit(t, h, check, batch...)
			}
			waitReceived(t, tc, keys*rounds/4, 3*time.Minute)
			killed := children[0]
			killed.killAfterPublish(t)
			children = append(children, start(3))
			tc.WaitAll(t, check, 3*time.Minute)
			// The others took over what the killed one held, and every
			// claim was settled or taken over.
			relaytest.Eventually(t, time.Minute, "no claim left", func() bool {
				n, err := h.Claims(t.Context())
				require.NoError(t, err)
				return n == 0
			})
			for _, c := range children[1:] {
				c.signal(syscall.SIGTERM)
			}
			report := m.judge(t, brokers, topic, check, tc, counted(children))
			require.Equal(t, keys*rounds, report.Committed)
			n, err := h.Claims(t.Context())
			require.NoError(t, err)
			require.Zero(t, n, "SIGTERM settled every claim")
		})
	}
}

// Nothing lost and Duplicates counted, in both modes: a relay process is SIGKILLed 5 times during a steady
// 300 events/s load, on PostgreSQL, MariaDB and SQLite, each time right after it
// published a batch, before it recorded it. Nothing is lost, and the
// duplicates on the topic are at most what the relays counted; in
// transactional mode a read_committed consumer sees none. A replacement
// relay takes its predecessor's transactional ID every other time (a
// restarted pod: it aborts the open transaction at once) and a new one
// otherwise (its predecessor's open transaction holds the others back until
// the coordinator aborts it).
func TestRelaySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, m := range modes {
		for _, db := range harnesses {
			t.Run(m.name+"/"+db.dialect, func(t *testing.T) {
				h := db.new(t)
				brokers := testenv.Kafka(t)
				topic := testenv.KafkaTopic(t, brokers, 4)
				progress := progressTopic(t, brokers)
				tc := m.consume(t, brokers, topic)
				check := faulttest.NewChecker()
				txnID := tableOf(h)
				start := func() *child {
					return startChild(t, append(childEnvFor(t, db.dialect, h, brokers), txnEnv(m, txnID, progress)...)...)
				}
				children := []*child{start()}

				writing := make(chan struct{})
				go func() {
					defer close(writing)
					writeSteadily(t, h, check, topic, 30, 300, 2100)
				}()
				for kill := range 5 {
					waitReceived(t, tc, 300*(kill+1), publishWait)
					children[len(children)-1].killAfterPublish(t)
					if kill%2 == 1 {
						txnID = fmt.Sprint(tableOf(h), "-", kill)
					}
					children = append(children, start())
				}
				<-writing
				tc.WaitAll(t, check, 2*time.Minute)
				children[len(children)-1].signal(syscall.SIGTERM)
				report := m.judge(t, brokers, topic, check, tc, counted(children))
				require.Equal(t, 2100, report.Committed)
			})
		}
	}
}

// A relay process is stopped (SIGSTOP) as it starts a publish, for longer
// than its lease, while another relay takes its events over, and then goes
// on, three times under a steady load, in both modes. The stopped relay's
// deadline passes while it sleeps: in transactional mode it commits nothing
// the other one took over, and a read_committed consumer sees each event
// once; in the default mode its late publish counts as a possible duplicate.
func TestRelayStalled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := testenv.PostgresHarness(t)
			brokers := testenv.Kafka(t)
			topic := testenv.KafkaTopic(t, brokers, 4)
			progress := progressTopic(t, brokers)
			tc := m.consume(t, brokers, topic)
			check := faulttest.NewChecker()
			start := func(name string) *child {
				return startChild(t, append(childEnvFor(t, "postgres", h, brokers), txnEnv(m, tableOf(h)+"-"+name, progress)...)...)
			}
			stalled, other := start("a"), start("b")
			writing := make(chan struct{})
			go func() {
				defer close(writing)
				writeSteadily(t, h, check, topic, 30, 300, 3000)
			}()
			// Rows of the outbox, while the stopped relay holds a claim.
			owner := fmt.Sprintf("EXISTS (SELECT 1 FROM %s c WHERE c.owner = 'child-%d')", migrations.ClaimsTable(tableOf(h)), stalled.cmd.Process.Pid)
			for i := range 3 {
				waitReceived(t, tc, 600*(i+1), 2*time.Minute)
				cont := stalled.stopInPublish(t)
				// The other relay takes over what the stopped one holds.
				deadline := time.Now().Add(time.Minute)
				for count(t, h, owner) > 0 {
					require.True(t, time.Now().Before(deadline), "the stopped relay's events were not taken over")
					time.Sleep(50 * time.Millisecond)
				}
				cont()
			}
			<-writing
			tc.WaitAll(t, check, 2*time.Minute)
			children := []*child{stalled, other}
			for _, c := range children {
				c.signal(syscall.SIGTERM)
			}
			m.judge(t, brokers, topic, check, tc, counted(children))
		})
	}
}
