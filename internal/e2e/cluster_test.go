package e2e_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/kafkacluster"
)

// The tests in this file start Kafka clusters of their own (3 nodes, or 1
// behind a proxy) and SIGKILL, stop and restart their nodes under load. They
// do not run in parallel with each other: each cluster is three JVMs.

// clusterKafka returns the relay's Kafka configuration on cluster c in mode
// m, with a progress topic of its own in transactional mode.
func clusterKafka(t *testing.T, c *kafkacluster.Cluster, m mode) kafka.Config {
	t.Helper()
	kc := kafka.Config{Brokers: c.Brokers()}
	if m.transactional {
		kc = transactional(kc, testenv.Table("relay"), c.CreateTopic(1))
		// The relay's lease is the default 30 s here: a failover may
		// take several seconds.
		kc.DeliveryTimeout, kc.TransactionTimeout = 10*time.Second, 15*time.Second
	}
	return kc
}

// stableOffsets returns the offsets up to which a consumer of mode m reads
// each partition of topic: the last stable offsets in transactional mode,
// the high watermarks else. A partition without a leader is missing.
func stableOffsets(ctx context.Context, adm *kadm.Client, topic string, m mode) map[int32]int64 {
	list := adm.ListEndOffsets
	if m.transactional {
		list = adm.ListCommittedOffsets
	}
	offsets, _ := list(ctx, topic) // a partition without a leader has an error
	out := map[int32]int64{}
	offsets.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			out[o.Partition] = o.Offset
		}
	})
	return out
}

// waitDelivering waits until every partition of topic takes records again
// for a consumer of mode m: its offset moved past where it was at from. It
// returns when that happened, and fails after two minutes.
func waitDelivering(t *testing.T, brokers []string, topic string, m mode, from map[int32]int64) time.Time {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequestTimeoutOverhead(2*time.Second))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		now := stableOffsets(ctx, adm, topic, m)
		cancel()
		moved := len(now) == len(from)
		for p, off := range from {
			moved = moved && now[p] > off
		}
		if moved {
			return time.Now()
		}
		require.True(t, time.Now().Before(deadline), "%s: not every partition took records again within two minutes", topic)
		time.Sleep(50 * time.Millisecond)
	}
}

func offsetsNow(t *testing.T, brokers []string, topic string, m mode) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return stableOffsets(ctx, kadm.NewClient(cl), topic, m)
}

// The leader of a busy partition is SIGKILLed while 300 events/s flow, and
// comes back 10 s later, on PostgreSQL, in both modes; in transactional mode
// the node killed is the one that also coordinates the relay's
// transactions. Nothing is lost, nothing parked; duplicates at most the
// counted ones, none in transactional mode. The test logs how long until
// every partition took records again.
func TestClusterLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Kafka cluster")
	}
	c := kafkacluster.Start(t, 3)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := testenv.PostgresHarness(t)
			topic := c.CreateTopic(4)
			kc := clusterKafka(t, c, m)
			tc := m.consume(t, c.Brokers(), topic)
			check := faulttest.NewChecker()
			r := runRelay(t, h.Store, kc, kafkaConfig())

			const total = 6000
			writing := make(chan struct{})
			go func() {
				defer close(writing)
				writeSteadily(t, h, check, topic, 50, 300, total)
			}()
			waitReceived(t, tc, 600, time.Minute)
			victim := c.Leader(topic, 0)
			if m.transactional {
				victim = c.TxnCoordinator(kc.TransactionalID)
			}
			from := offsetsNow(t, c.Brokers(), topic, m)
			killed := time.Now()
			c.Kill(victim)
			resumed := waitDelivering(t, c.Brokers(), topic, m, from)
			t.Logf("%s mode: node %d killed; every partition took records again after %v",
				m.name, c.NodeID(victim), resumed.Sub(killed).Round(time.Millisecond))
			time.Sleep(time.Until(killed.Add(10 * time.Second))) // the node returns 10 s after its death
			c.Restart(victim)
			<-writing
			tc.WaitAll(t, check, 3*time.Minute)
			m.judge(t, c.Brokers(), topic, check, tc, r.Stats().PossibleDuplicates)
			require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
			t.Log("relay:", r.Stats())
		})
	}
}

// errorsSeen records the errors of the relay's publishes.
type errorsSeen struct {
	mu   sync.Mutex
	errs []error
}

func (e *errorsSeen) TracePublishStart(ctx context.Context, _ outbox.TracePublishStartData) context.Context {
	return ctx
}

func (e *errorsSeen) TracePublishEnd(_ context.Context, d outbox.TracePublishEndData) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range d.Errs {
		if err != nil {
			e.errs = append(e.errs, err)
		}
	}
}

func (e *errorsSeen) all() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// Two of the three brokers are SIGKILLed under load: the partitions lose
// their leaders or the replicas that acks=all waits for (and the KRaft
// quorum is lost). Every publish fails as unreachable (or skipped behind an
// unreachable one), the relay releases the events without counting an
// attempt, and delivery resumes when the brokers return.
func TestClusterTwoBrokersDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Kafka cluster")
	}
	c := kafkacluster.Start(t, 3)
	h := testenv.PostgresHarness(t)
	topic := c.CreateTopic(4)
	tc := testenv.ConsumeKafka(t, c.Brokers(), topic)
	check := faulttest.NewChecker()
	seen := &errorsSeen{}
	cfg := kafkaConfig()
	cfg.Tracer = seen
	cfg.MaxRetries = 3 // an attempt counted for the outage would soon park events
	cfg.MaxBackoff = time.Second
	r := runRelay(t, h.Store, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 3 * time.Second}, cfg)

	stop := make(chan struct{})
	written := make(chan int, 1)
	go func() {
		written <- writeUntil(t, h, check, topic, 50, 300, func(int) bool {
			select {
			case <-stop:
				return true
			default:
				return false
			}
		})
	}()
	waitReceived(t, tc, 600, time.Minute)
	c.Kill(0)
	c.Kill(1)
	outage := time.Now()
	// The outage lasts until the relay released 600 events for it.
	deadline := time.Now().Add(3 * time.Minute)
	for r.Stats().Released < 600 {
		require.True(t, time.Now().Before(deadline), "the relay released %d events in 3 minutes", r.Stats().Released)
		time.Sleep(50 * time.Millisecond)
	}
	during := len(seen.all())
	t.Logf("outage: %d publish errors, %d events released after %v", during, r.Stats().Released, time.Since(outage).Round(time.Millisecond))
	c.Restart(0)
	c.Restart(1)
	close(stop)
	t.Logf("%d events written", <-written)
	tc.WaitAll(t, check, 3*time.Minute)

	errs := seen.all()
	require.NotEmpty(t, errs)
	var notEnough, unknown int
	for _, err := range errs {
		require.Truef(t, errors.Is(err, outbox.ErrUnreachable) || errors.Is(err, outbox.ErrSkipped), "not unreachable: %v", err)
		if errors.Is(err, outbox.ErrUnknownOutcome) {
			unknown++
		}
		if errors.Is(err, kerr.NotEnoughReplicas) {
			notEnough++
		}
	}
	t.Logf("%d publish errors: %d not enough replicas, %d with an unknown outcome; e.g. %v", len(errs), notEnough, unknown, errs[0])
	report := check.Check(tc.Received(), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, count(t, h, "retry_count > 0"), "the outage used no attempts")
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
}

// A rolling restart of all three brokers, one at a time, under a steady
// load, in both modes: each node is stopped (SIGTERM, so that it hands its
// leaderships over), started again from its log directory, and the next one
// waits until every replica is back in sync. Nothing is lost; duplicates at
// most the counted ones, none in transactional mode.
func TestClusterRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Kafka cluster")
	}
	c := kafkacluster.Start(t, 3)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			h := testenv.PostgresHarness(t)
			topic := c.CreateTopic(4)
			kc := clusterKafka(t, c, m)
			tc := m.consume(t, c.Brokers(), topic)
			check := faulttest.NewChecker()
			r := runRelay(t, h.Store, kc, kafkaConfig())

			stop := make(chan struct{})
			written := make(chan int, 1)
			go func() {
				written <- writeUntil(t, h, check, topic, 50, 300, func(int) bool {
					select {
					case <-stop:
						return true
					default:
						return false
					}
				})
			}()
			waitReceived(t, tc, 600, time.Minute)
			for i := range 3 {
				began := time.Now()
				c.Stop(i)
				c.Restart(i)
				c.WaitInSync(topic)
				if m.transactional {
					c.WaitInSync(kc.ProgressTopic)
				}
				t.Logf("node %d restarted and in sync after %v; %d received", c.NodeID(i), time.Since(began).Round(time.Millisecond), len(tc.Received()))
			}
			close(stop)
			t.Logf("%d events written", <-written)
			tc.WaitAll(t, check, 3*time.Minute)
			m.judge(t, c.Brokers(), topic, check, tc, r.Stats().PossibleDuplicates)
			require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
			t.Log("relay:", r.Stats())
		})
	}
}

// produceKey is the Kafka API key of Produce requests.
const produceKey = 0

// A single broker is SIGKILLed between appending a batch and acknowledging
// it, and restarted from its log directory while the relay runs: a proxy in
// front of the node loses the produce response (the broker appended the
// records, the client never hears so), the node is killed, and the client
// sends the batch again, with its producer ID and sequence numbers, to the
// restarted node. The node rebuilt its producer state from its log, so it
// recognizes the batch and appends nothing twice: no duplicate, and none
// counted, since every outcome was settled within the call. The delivery
// timeout (60 s) outlasts the restart.
func TestKafkaLostAckBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka node")
	}
	c := kafkacluster.Start(t, 1, kafkacluster.WithProxies())
	h := testenv.PostgresHarness(t)
	topic := c.CreateTopic(4)
	tc := testenv.ConsumeKafka(t, c.Brokers(), topic)
	check := faulttest.NewChecker()
	cfg := kafkaConfig()
	cfg.Lease = 90 * time.Second // publishing gets three quarters: more than DeliveryTimeout
	r := runRelay(t, h.Store, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 60 * time.Second}, cfg)

	writing := make(chan struct{})
	go func() {
		defer close(writing)
		writeSteadily(t, h, check, topic, 50, 300, 3000)
	}()
	waitReceived(t, tc, 300, time.Minute)
	lost, restore := c.LoseResponses(0, produceKey)
	select {
	case <-lost:
	case <-time.After(time.Minute):
		t.Fatal("no produce response lost")
	}
	c.Kill(0)
	restore()
	began := time.Now()
	c.Restart(0)
	t.Logf("node restarted from its log directory in %v", time.Since(began).Round(time.Millisecond))
	<-writing
	tc.WaitAll(t, check, 3*time.Minute)
	report := check.Check(tc.Received(), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, report.Duplicates, "the restarted broker dropped the resent batch")
	require.Zero(t, r.Stats().PossibleDuplicates, "the resend settled every outcome")
	require.Zero(t, count(t, h, "retry_count > 0 OR parked_at IS NOT NULL"))
}
