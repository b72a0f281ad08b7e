package e2e_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/broker/kafka"
	"github.com/outboxkit/outbox/broker/kafka/devkafka"
	"github.com/outboxkit/outbox/internal/faulttest"
	"github.com/outboxkit/outbox/internal/testenv"
	"github.com/outboxkit/outbox/internal/testenv/kafkacluster"
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
)

// kafkaConfig is the relay configuration of the in-process Kafka tests: the
// default lease, so that publishing is bounded well above the Kafka
// adapter's own bound.
func kafkaConfig() relay.Config {
	cfg := childConfig()
	cfg.Lease = 0
	return cfg
}

// runRelay runs an in-process relay to the brokers until the test ends.
func runRelay(t *testing.T, st store.Store, kc kafka.Config, cfg relay.Config) *relay.Relay {
	t.Helper()
	pub, err := kafka.New(kc)
	require.NoError(t, err)
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	t.Cleanup(func() { pub.Close() }) // after the relay stopped: cleanups run last first
	r, _ := relaytest.Start(t, st, pub, cfg)
	return r
}

// A single Kafka broker is killed (SIGKILL) while 3,000 events are written
// at up to 300 events/s, once 300 arrived, and restarted from its log
// directory once publishes met the outage: nothing is lost, nothing parked,
// no attempt is counted for the outage, and the duplicates are at most the
// counted ones. A 2 s DeliveryTimeout makes the publishes that meet the
// outage fail, rather than wait for the broker.
func TestKafkaOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka node")
	}
	t.Parallel()
	h := testenv.PostgresHarness(t)
	c := kafkacluster.Start(t, 1)
	topic := c.CreateTopic(4)
	tc := testenv.ConsumeKafka(t, c.Brokers(), topic)
	check := faulttest.NewChecker()
	cfg := kafkaConfig()
	cfg.ErrorRetryInterval = 100 * time.Millisecond
	cfg.MaxBackoff = time.Second
	cfg.MaxRetries = 3
	r := runRelay(t, h.Store, kafka.Config{Brokers: c.Brokers(), DeliveryTimeout: 2 * time.Second}, cfg)

	writing := make(chan struct{})
	go func() {
		defer close(writing)
		writeSteadily(t, h, check, topic, 50, 300, 3600)
	}()
	waitReceived(t, tc, 300, time.Minute)
	c.Kill(0)
	relaytest.Eventually(t, 2*time.Minute, "publishes met the outage", func() bool { return r.Stats().Released > 0 })
	c.Restart(0)
	<-writing
	tc.WaitAll(t, check, 2*time.Minute)
	waitSettled(t, h, time.Minute)
	report := check.Check(testenv.KafkaReceived(t, c.Brokers(), topic), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	require.Zero(t, count(t, h, "retry_count > 0"), "the outage used no attempts")
}

// Produce responses are dropped for 2 s after the records were appended: the
// idempotent producer's resend is deduplicated, so no duplicate reaches the
// topic. This test runs on devkafka: a real broker cannot be made to drop
// the acks of requests it appended.
func TestKafkaLostAcks(t *testing.T) {
	t.Parallel()
	h := testenv.PostgresHarness(t)
	kb, err := devkafka.New(devkafka.Config{Partitions: 4})
	require.NoError(t, err)
	t.Cleanup(kb.Close)
	brokers := []string{kb.Addr()}
	topic := testenv.Table("orders")
	tc := testenv.ConsumeKafka(t, brokers, topic)
	check := faulttest.NewChecker()
	r := runRelay(t, h.Store, kafka.Config{Brokers: brokers}, kafkaConfig())
	commit(t, h, check, event(topic, "warm-up", 0))
	tc.WaitAll(t, check, time.Minute)

	kb.DropProduceResponses(2 * time.Second)
	for i := range 50 {
		commit(t, h, check, event(topic, "k"+string(rune('a'+i%5)), i))
	}
	tc.WaitAll(t, check, time.Minute)
	waitSettled(t, h, time.Minute)
	report := check.Check(testenv.KafkaReceived(t, brokers, topic), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, report.Duplicates, "no duplicate reaches the topic")
	require.Zero(t, r.Stats().PossibleDuplicates, "the resend settled every outcome")
}

// A message over the topic's max.message.bytes is parked with a clear
// last_error, and the other keys keep flowing, although they share its
// record batches.
func TestKafkaMessageTooLarge(t *testing.T) {
	t.Parallel()
	h := testenv.PostgresHarness(t)
	brokers := testenv.Kafka(t)
	topic := testenv.KafkaTopicWith(t, brokers, 4, map[string]string{"max.message.bytes": "65536"})
	tc := testenv.ConsumeKafka(t, brokers, topic)
	check := faulttest.NewChecker()
	r := runRelay(t, h.Store, kafka.Config{Brokers: brokers}, kafkaConfig())

	big := event(topic, "big", 0)
	big.Payload = []byte(`{"blob":"` + strings.Repeat("x", 200<<10) + `"}`)
	var others []outbox.Event
	for i := range 20 {
		others = append(others, event(topic, "small-"+string(rune('a'+i)), i))
	}
	commit(t, h, faulttest.NewChecker(), big)
	commit(t, h, check, others...)
	tc.WaitAll(t, check, time.Minute)
	relaytest.Eventually(t, time.Minute, "the large event parked and counted", func() bool {
		return count(t, h, "parked_at IS NOT NULL") > 0 && r.Stats().Parked > 0
	})
	_, lastErr, err := h.Row(context.Background(), big.ID)
	require.NoError(t, err)
	t.Log("last_error:", lastErr)
	require.Contains(t, strings.ToLower(lastErr), "too large")
	require.Equal(t, int64(1), r.Stats().Parked)
	waitSettled(t, h, time.Minute)
	report := check.Check(testenv.KafkaReceived(t, brokers, topic), r.Stats().PossibleDuplicates)
	require.True(t, report.OK(), report.String())
	require.Zero(t, r.Stats().PossibleDuplicates, "the broker refused what it did not append")
}
