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
	"github.com/outboxkit/outbox/relay"
	"github.com/outboxkit/outbox/relay/relaytest"
	"github.com/outboxkit/outbox/store"
)

func devkafkaConfig() devkafka.Config { return devkafka.Config{Partitions: 4} }

// kafkaConfig is the relay configuration of the in-process Kafka tests: the
// default lease, so that publishing is bounded well above the Kafka
// adapter's own worst case.
func kafkaConfig() relay.Config {
	cfg := childConfig()
	cfg.Lease = 0
	return cfg
}

// runRelay runs an in-process relay to the broker until the test ends.
func runRelay(t *testing.T, st store.Store, addr string, cfg relay.Config) *relay.Relay {
	t.Helper()
	pub, err := kafka.New(kafka.Config{Brokers: []string{addr}})
	require.NoError(t, err)
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	t.Cleanup(func() { pub.Close() }) // after the relay stopped: cleanups run last first
	r, _ := relaytest.Start(t, st, pub, cfg)
	return r
}

// The broker is stopped for 5 s during a 300 events/s load and restarted on
// the same port: nothing is lost, nothing parked, and no attempt is counted
// for the outage.
func TestKafkaOutage(t *testing.T) {
	t.Parallel()
	h := testenv.PostgresHarness(t)
	kb := newBroker(t, devkafkaConfig())
	topic := testenv.Table("orders")
	tc := consume(t, kb.Addr(), topic)
	check := faulttest.NewChecker()
	cfg := kafkaConfig()
	cfg.ErrorRetryInterval = 100 * time.Millisecond
	cfg.MaxBackoff = time.Second
	cfg.MaxRetries = 3
	r := runRelay(t, h.Store, kb.Addr(), cfg)

	writing := make(chan struct{})
	go func() {
		defer close(writing)
		writeSteadily(t, h, check, topic, 50, 300, 9*time.Second)
	}()
	time.Sleep(2 * time.Second)
	kb.Stop()
	time.Sleep(5 * time.Second)
	require.NoError(t, kb.Restart())
	<-writing
	tc.waitAll(t, check, time.Minute)
	report := check.Check(tc.snapshot(), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, count(t, h, "parked_at IS NOT NULL"))
	require.Zero(t, count(t, h, "retry_count > 0"), "the outage used no attempts")
	require.Greater(t, r.Stats().Released, int64(0), "events met the outage")
}

// Produce responses are dropped for 2 s after the records were appended: the
// idempotent producer's resend is deduplicated, so no duplicate reaches the
// topic.
func TestKafkaLostAcks(t *testing.T) {
	t.Parallel()
	h := testenv.PostgresHarness(t)
	kb := newBroker(t, devkafkaConfig())
	topic := testenv.Table("orders")
	tc := consume(t, kb.Addr(), topic)
	check := faulttest.NewChecker()
	r := runRelay(t, h.Store, kb.Addr(), kafkaConfig())
	commit(t, h, check, event(topic, "warm-up", 0))
	tc.waitAll(t, check, 30*time.Second)

	kb.DropProduceResponses(2 * time.Second)
	for i := range 50 {
		commit(t, h, check, event(topic, "k"+string(rune('a'+i%5)), i))
	}
	tc.waitAll(t, check, time.Minute)
	report := check.Check(tc.snapshot(), r.Stats().PossibleDuplicates)
	t.Log(report, "; relay:", r.Stats())
	require.True(t, report.OK(), report.String())
	require.Zero(t, report.Duplicates, "no duplicate reaches the topic")
}

// A message over the broker's message.max.bytes is parked with a clear
// last_error, and the other keys keep flowing.
func TestKafkaMessageTooLarge(t *testing.T) {
	t.Parallel()
	h := testenv.PostgresHarness(t)
	kb := newBroker(t, devkafka.Config{Partitions: 4, MaxMessageBytes: 64 << 10})
	topic := testenv.Table("orders")
	tc := consume(t, kb.Addr(), topic)
	check := faulttest.NewChecker()
	r := runRelay(t, h.Store, kb.Addr(), kafkaConfig())

	big := event(topic, "big", 0)
	big.Payload = []byte(`{"blob":"` + strings.Repeat("x", 200<<10) + `"}`)
	commit(t, h, faulttest.NewChecker(), big)
	var others []outbox.Event
	for i := range 20 {
		others = append(others, event(topic, "small-"+string(rune('a'+i)), i))
	}
	commit(t, h, check, others...)
	tc.waitAll(t, check, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for count(t, h, "parked_at IS NOT NULL") == 0 {
		require.True(t, time.Now().Before(deadline), "the large event was not parked")
		time.Sleep(50 * time.Millisecond)
	}
	_, lastErr, err := h.Row(context.Background(), big.ID)
	require.NoError(t, err)
	t.Log("last_error:", lastErr)
	require.Contains(t, strings.ToLower(lastErr), "too large")
	require.Equal(t, int64(1), r.Stats().Parked)
	report := check.Check(tc.snapshot(), 0)
	require.True(t, report.OK(), report.String())
}
